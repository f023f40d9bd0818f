"""lr_scheduler.step: "batch" steps the scheduler after every optimizer step, "epoch" (the default) after
every epoch, and anything else is refused: a misspelt "batches" would silently step a OneCycleLR
once per epoch, so its warm-up would never end."""
import csv

import pytest
import torch

from tests.helpers.cli import run_cli, train_in_process
from tests.helpers.configs import shrink_config, write_config

ONE_CYCLE = {"type": "OneCycleLR", "args": {"max_lr": 0.01, "total_steps": 10}}


def one_cycle_lr_after(steps):
    """The lr a OneCycleLR of ONE_CYCLE's args gives after `steps` scheduler steps."""
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=0.001)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, **ONE_CYCLE["args"])
    for _ in range(steps):
        optimizer.step()
        scheduler.step()
    return optimizer.param_groups[0]["lr"]


def test_a_misspelt_step_is_refused_naming_the_allowed_values(tmp_path, synthetic_data_dir, monkeypatch, capsys):

    cfg = shrink_config(tmp_path, synthetic_data_dir, epochs=1, len_epoch=3)
    cfg["lr_scheduler"] = {**ONE_CYCLE, "step": "batches"}
    code, _, err = run_cli("train", ["-c", write_config(tmp_path, cfg)], monkeypatch, capsys)
    lines = err.splitlines()
    assert code == 2
    assert len(lines) == 1, lines
    assert 'lr_scheduler.step must be "epoch" or "batch"' in lines[0] and "'batches'" in lines[0]
    assert not (tmp_path / "saved").exists()


def test_step_batch_steps_a_one_cycle_lr_after_every_optimizer_step(tmp_path, synthetic_data_dir, one_thread):
    cfg = shrink_config(tmp_path, synthetic_data_dir, epochs=2, len_epoch=3, monitor="off")
    cfg["lr_scheduler"] = {**ONE_CYCLE, "step": "batch"}
    config = train_in_process("-c", write_config(tmp_path, cfg))
    checkpoint = torch.load(config.save_dir / "model_latest.pth", weights_only=True)
    assert checkpoint["lr_scheduler"]["last_epoch"] == 6  # 2 epochs of 3 optimizer steps; per epoch: 2
    with open(config.save_dir / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    # metrics.csv's lr is the one an epoch started with: epoch 2 starts 3 steps into the cycle
    assert float(rows[1]["lr"]) == pytest.approx(one_cycle_lr_after(3), rel=1e-6)
    assert one_cycle_lr_after(3) != pytest.approx(one_cycle_lr_after(1), rel=1e-3)  # what per-epoch gives
    assert checkpoint["optimizer"]["param_groups"][0]["lr"] == pytest.approx(one_cycle_lr_after(6), rel=1e-6)
