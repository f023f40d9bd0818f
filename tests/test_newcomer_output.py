"""What a newcomer reads: train.py --help, the per-epoch block, test.py's device note."""
import re

import pandas as pd
import pytest
import torch

import train
from tests.helpers.cli import run_script, train_in_process
from tests.helpers.configs import shrink_config, write_config


def test_help_shows_dotted_config_keys(capsys):
    with pytest.raises(SystemExit):
        train.parse_args(["--help"])
    out = capsys.readouterr().out
    assert "sets optimizer.args.lr" in out and "sets data_loader.args.batch_size" in out
    assert "optimizer;args;lr" not in out and "data_loader;args" not in out


@pytest.fixture(scope="module")
def short_run(tmp_path_factory, synthetic_data_dir):
    tmp_path = tmp_path_factory.mktemp("short_run")
    return train_in_process("-c", write_config(tmp_path, shrink_config(tmp_path, synthetic_data_dir, epochs=1)))


def test_epoch_block_rounds_but_metrics_csv_keeps_every_digit(short_run):
    log = (short_run.log_dir / "info.log").read_text()
    block = dict(re.findall(r" - INFO -     (\w+)\s*: (\S+)$", log, re.MULTILINE))
    assert {"loss", "val_loss", "lr", "epoch_time"} <= set(block), log
    for key, shown in block.items():
        digits = re.sub(r"e.*$", "", shown).lstrip("-0.").replace(".", "")
        assert len(digits) <= 6, f"{key} printed as {shown}"
    row = pd.read_csv(short_run.save_dir / "metrics.csv").iloc[0]
    assert row["loss"] == pytest.approx(float(block["loss"]), rel=1e-5)
    assert f"{row['loss']:.6g}" != repr(row["loss"]), "metrics.csv lost digits"


@pytest.mark.slow  # a subprocess: about 7 s
def test_test_py_does_not_talk_of_training(short_run):
    result = run_script("test.py", "-r", short_run.save_dir / "model_best.pth")
    assert result.returncode == 0, result.stderr
    assert "training" not in (result.stdout + result.stderr).lower()
    if not torch.cuda.is_available():
        assert "running on CPU" in result.stdout + result.stderr
