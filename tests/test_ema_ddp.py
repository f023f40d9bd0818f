"""trainer.ema under DDP (torchrun, 2 CPU ranks, gloo): each rank's average is the same, and it is the EMA of
the weights after each optimizer step."""
from pathlib import Path

import pytest
import torch

from tests.helpers.configs import shrink_config, write_config
from tests.helpers.runs import run_dirs
from tests.helpers.torchrun import STANDALONE, run_torchrun

pytestmark = pytest.mark.slow
EMA_RUN = Path(__file__).parent / "helpers" / "ddp_ema_run.py"
SETTINGS = {"decay": 0.8, "every": 2, "start": 1}


def test_each_rank_keeps_the_same_average_and_the_checkpoint_holds_it(tmp_path, synthetic_data_dir):
    config = shrink_config(tmp_path, synthetic_data_dir, verbosity=1, monitor="min val_loss",
                           ema={**SETTINGS, "validate": True})
    evidence = tmp_path / "evidence"
    evidence.mkdir()
    launched = run_torchrun(*STANDALONE, EMA_RUN, write_config(tmp_path, config), evidence, timeout=120)
    assert launched.returncode == 0, launched.stderr[-3000:]

    ema = [torch.load(evidence / f"ema_rank{r}.pt", weights_only=True) for r in (0, 1)]
    steps = torch.load(evidence / "steps_rank0.pt", weights_only=True)
    (run,) = run_dirs(tmp_path / "saved")
    saved = torch.load(run / "model_latest.pth", weights_only=True)["ema"]
    # 540 training samples, 2 ranks, batches of 64: 5 steps an epoch, 10 in all; averaged after 3, 5, 7, 9
    assert len(steps) == 10 and ema[0]["n_averaged"] == ema[1]["n_averaged"] == saved["n_averaged"] == 4
    expected = None
    for k, weights in enumerate(steps, start=1):
        if k > SETTINGS["start"] and (k - SETTINGS["start"]) % SETTINGS["every"] == 0:
            expected = {n: w.double() if expected is None else 0.8 * expected[n] + 0.2 * w.double()
                        for n, w in weights.items()}
    for name, value in ema[0]["weights"].items():
        assert torch.equal(value, ema[1]["weights"][name]) and torch.equal(value, saved["weights"][name]), name
        assert torch.allclose(value.double(), expected[name], rtol=0, atol=1e-6), name
    assert "val_on_ema" in (run / "metrics.csv").read_text().splitlines()[0]
