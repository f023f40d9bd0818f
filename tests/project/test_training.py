"""The entry points on the small config: a short train through train.py, test.py on its checkpoint, an exact
resume, and a fine-tune from a checkpoint with a partial config."""
import json
import math
import shutil

import pytest
import torch

import train
from utils.errors import UserError

from .conftest import EPOCHS, run_script, write_config


def run_folder(save_dir):
    """The one run folder a training left under save_dir/models/<name>/."""
    (folder,) = (p for p in (save_dir / "models").glob("*/*") if p.is_dir())
    return folder


def train_here(*argv):
    """train.py's main in this process (no start-up time); returns the run's ConfigParser."""
    try:
        config = train.parse_args([str(a) for a in argv])
        train.main(config)
        return config
    except UserError as err:  # the line train.py would print: the project's config or parts are at fault
        problem = err
    pytest.fail(f"python train.py {' '.join(map(str, argv))}: error: {problem}", pytrace=False)


def weights(checkpoint):
    return torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]


def test_train_py_then_test_py_on_its_checkpoint(small_config, tmp_path):
    run_script("train.py", "-c", write_config(small_config, tmp_path / "config.json"))
    run = run_folder(tmp_path / "saved")
    history = (run / "metrics.csv").read_text().splitlines()
    assert len(history) == 1 + EPOCHS, history  # header, then one row per epoch

    run_script("test.py", "-r", run / f"checkpoint-epoch{EPOCHS}.pth")
    results = run / f"checkpoint-epoch{EPOCHS}.test.json"
    assert results.is_file(), f"test.py ran but wrote no {results.name}"
    result = json.loads(results.read_text())
    assert result["n_samples"] > 0
    assert all(math.isfinite(value) for value in result["metrics"].values()), result


def test_resume_continues_exactly(small_config, tmp_path):
    """Two epochs in one go, and the same run resumed from its first epoch: the same weights, bit for bit."""
    whole = train_here("-c", write_config(small_config, tmp_path / "config.json"))
    resumed_dir = tmp_path / "resumed"
    resumed_dir.mkdir()
    checkpoint = shutil.copy(whole.save_dir / "checkpoint-epoch1.pth", resumed_dir)
    resumed = train_here("-r", checkpoint)

    last = f"checkpoint-epoch{EPOCHS}.pth"
    ours, theirs = weights(resumed.save_dir / last), weights(whole.save_dir / last)
    assert ours.keys() == theirs.keys()
    differ = [name for name in ours if not torch.equal(ours[name], theirs[name])]
    assert not differ, f"after resuming, these weights differ from an uninterrupted run: {differ[:5]}"


def test_fine_tune_with_a_partial_config(small_config, tmp_path):
    """-c partial.json -r checkpoint: a new run from the checkpoint's weights, with the partial file's changes."""
    first = train_here("-c", write_config(small_config, tmp_path / "config.json"))
    lr = small_config["optimizer"].get("args", {}).get("lr", 0.001) / 10
    partial = write_config({"trainer": {"epochs": EPOCHS + 1}, "optimizer": {"args": {"lr": lr}}},
                           tmp_path / "partial.json")
    tuned = train_here("-c", partial, "-r", first.save_dir / f"checkpoint-epoch{EPOCHS}.pth")

    assert tuned.save_dir != first.save_dir  # a new run beside the first
    saved = json.loads((tuned.save_dir / "config.json").read_text())
    assert saved["optimizer"]["args"]["lr"] == lr and saved["arch"] == small_config["arch"]
    assert [line.split(",")[0] for line in (tuned.save_dir / "metrics.csv").read_text().splitlines()[1:]] == [
        str(EPOCHS + 1)]  # it went on from the checkpoint's epoch
    (group, *_) = torch.load(tuned.save_dir / "model_latest.pth", weights_only=True)["optimizer"]["param_groups"]
    assert group.get("initial_lr", group["lr"]) == lr, "the fine-tune ran at the checkpoint's learning rate"
    start, end = weights(first.save_dir / f"checkpoint-epoch{EPOCHS}.pth"), weights(tuned.save_dir / "model_latest.pth")
    assert any(not torch.equal(start[name], end[name]) for name in start), "fine-tuning changed no weight"
