"""On the per-sample path (data_loader.args.in_memory: false) the loader owns a batch transform;
validation and test.py must normalise once, exactly as a hand-written evaluation of the same weights.

Normalising twice still gives a number (val_accuracy 0.40 -> 0.10 in a review), so only a comparison
with a reference computed by hand, from the raw IDX bytes, catches it.
"""
import csv
import json
import struct

import pytest
import torch
import torch.nn.functional as F

from data_loader.data_loaders import MnistDataLoader
from model.model import MnistModel
from tests.helpers.cli import run_script, train_in_process
from tests.helpers.configs import shrink_config, write_config


def read_idx(path):
    """An IDX file's array, read from its bytes: magic (0, 0, 0x08, ndim), big-endian sizes, data."""
    raw = path.read_bytes()
    ndim = raw[3]
    shape = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    return torch.frombuffer(bytearray(raw[4 + 4 * ndim:]), dtype=torch.uint8).reshape(shape)


def reference_metrics(state_dict, images, labels):
    """Loss and accuracy of the weights on images normalised once, by hand: (x/255 - 0.1307) / 0.3081."""
    model = MnistModel()
    model.load_state_dict(state_dict)
    model.eval()
    inputs = (images.unsqueeze(1).to(torch.float32) / 255 - 0.1307) / 0.3081
    with torch.no_grad():
        output = model(inputs)
    targets = labels.long()
    return {"loss": F.nll_loss(output, targets).item(),
            "accuracy": (output.argmax(dim=1) == targets).float().mean().item()}


@pytest.fixture(scope="module")
def per_sample_run(tmp_path_factory, synthetic_data_dir):
    """One short run on the per-sample path: 4 batches, then validation on 60 held-out samples."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        tmp = tmp_path_factory.mktemp("per_sample")
        cfg = shrink_config(tmp, synthetic_data_dir, epochs=1, len_epoch=4, monitor="off")
        cfg["data_loader"]["args"].update(in_memory=False, num_workers=0)
        config = train_in_process("-c", write_config(tmp, cfg))
    finally:
        torch.set_num_threads(threads)
    checkpoint = config.save_dir / "model_latest.pth"
    with open(config.save_dir / "metrics.csv", newline="") as handle:
        (row,) = csv.DictReader(handle)
    return {"checkpoint": checkpoint, "row": row, "config": cfg, "raw": synthetic_data_dir / "MNIST" / "raw",
            "state_dict": torch.load(checkpoint, weights_only=True)["state_dict"]}


def test_validation_on_the_per_sample_path_normalises_once(per_sample_run):
    args = per_sample_run["config"]["data_loader"]["args"]
    split = MnistDataLoader(args["data_dir"], batch_size=64, validation_split=args["validation_split"],
                            download=False, seed=per_sample_run["config"]["seed"])  # the run's split
    valid = split.valid_sampler.indices
    images = read_idx(per_sample_run["raw"] / "train-images-idx3-ubyte")[valid]
    labels = read_idx(per_sample_run["raw"] / "train-labels-idx1-ubyte")[valid]
    expected = reference_metrics(per_sample_run["state_dict"], images, labels)
    row = per_sample_run["row"]
    assert len(valid) == 60
    assert float(row["val_loss"]) == pytest.approx(expected["loss"], abs=1e-5)
    assert float(row["val_accuracy"]) == pytest.approx(expected["accuracy"], abs=1e-6)


def test_test_py_on_the_per_sample_path_normalises_once(per_sample_run):
    checkpoint = per_sample_run["checkpoint"]
    result = run_script("test.py", "-r", checkpoint, env={"OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    tested = json.loads(checkpoint.with_name("model_latest.test.json").read_text())
    images = read_idx(per_sample_run["raw"] / "t10k-images-idx3-ubyte")
    labels = read_idx(per_sample_run["raw"] / "t10k-labels-idx1-ubyte")
    expected = reference_metrics(per_sample_run["state_dict"], images, labels)
    assert tested["n_samples"] == 200
    assert tested["metrics"]["loss"] == pytest.approx(expected["loss"], abs=1e-5)
    assert tested["metrics"]["accuracy"] == pytest.approx(expected["accuracy"], abs=1e-6)
