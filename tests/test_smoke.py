"""A 2-epoch training run through train.py, then test.py on its best checkpoint, checked by hand."""
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from model.model import MnistModel
from tests.helpers.cli import run_script
from tests.helpers.runs import run_dirs


def read_idx(path):
    """An IDX ubyte file as a numpy array: 2 zero bytes, type 0x08, ndim, big-endian sizes, data."""
    raw = path.read_bytes()
    assert raw[:3] == b"\x00\x00\x08", path
    ndim = raw[3]
    shape = tuple(int(size) for size in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def evaluate_by_hand(checkpoint_path, raw_dir):
    """Loss and accuracy over the test split, from the files and the weights alone (not test.py)."""
    model = MnistModel()
    model.load_state_dict(torch.load(checkpoint_path, weights_only=True)["state_dict"])
    model.eval()
    images = torch.from_numpy(read_idx(raw_dir / "t10k-images-idx3-ubyte").copy()).float()
    labels = torch.from_numpy(read_idx(raw_dir / "t10k-labels-idx1-ubyte").astype(np.int64))
    with torch.no_grad():
        output = model(((images / 255 - 0.1307) / 0.3081).unsqueeze(1))
    per_sample = F.nll_loss(output, labels, reduction="none").double()
    correct = (output.argmax(dim=1) == labels).sum().item()
    return {"loss": per_sample.sum().item() / len(labels), "accuracy": correct / len(labels), "n": len(labels)}


def test_train_then_test(small_config, tmp_path):
    trained = run_script("train.py", "-c", small_config)
    assert trained.returncode == 0, trained.stderr
    (run,) = run_dirs(tmp_path / "saved")
    assert {"checkpoint-epoch1.pth", "checkpoint-epoch2.pth", "model_best.pth", "model_latest.pth",
            "config.json", "metrics.csv"} <= {p.name for p in run.iterdir()}
    checkpoint = torch.load(run / "model_latest.pth", weights_only=True)
    assert checkpoint["epoch"] == 2

    tested = run_script("test.py", "-r", run / "model_best.pth")
    assert tested.returncode == 0, tested.stderr
    results = json.loads((run / "model_best.test.json").read_text())
    data_dir = json.loads(small_config.read_text())["data_loader"]["args"]["data_dir"]
    by_hand = evaluate_by_hand(run / "model_best.pth", Path(data_dir) / "MNIST" / "raw")
    assert results["n_samples"] == by_hand["n"] == 200
    # test.py reports the numbers of these weights on these files
    assert abs(results["metrics"]["accuracy"] - by_hand["accuracy"]) <= 1e-6
    assert abs(results["metrics"]["loss"] - by_hand["loss"]) <= 1e-6 * by_hand["loss"]
    # and training did learn: each class is a bright square at its own place; chance is 0.1, 2 epochs give ~0.8
    assert by_hand["accuracy"] >= 0.5, by_hand
