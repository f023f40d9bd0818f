"""A 2-epoch training run through train.py, then test.py on its best checkpoint."""
import json

import torch

from tests.conftest import run_dirs, run_script


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
    assert results["n_samples"] == 200
    assert 0.0 <= results["metrics"]["accuracy"] <= 1.0
