"""metrics.csv: one row per epoch, kept through a crash, continued without duplicates on resume."""
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch

from runs.history import history_with_row
from runs.journal import write_files
from tests.helpers.cli import train_in_process
from tests.helpers.configs import shrink_config, write_config
from trainer.trainer import Trainer

COLUMNS = ["epoch", "loss", "accuracy", "top_k_acc", "val_loss", "val_accuracy", "val_top_k_acc",
           "lr", "epoch_time", "samples_per_sec"]


@pytest.fixture(scope="module")
def two_epoch_run(tmp_path_factory, synthetic_data_dir):
    tmp = tmp_path_factory.mktemp("history")
    cfg = shrink_config(tmp, synthetic_data_dir, len_epoch=3)
    config = train_in_process("-c", write_config(tmp, cfg))
    return config.save_dir, pd.read_csv(config.save_dir / "metrics.csv")


def append_epoch_row(csv_path, row):
    """Add `row` to the csv on disk, atomically, as the trainer's save does."""
    write_files(Path(csv_path).parent, [(Path(csv_path).name, history_with_row(csv_path, row))])


def test_one_row_per_epoch_with_every_metric_lr_and_time(two_epoch_run):
    run, history = two_epoch_run
    assert list(history.columns) == COLUMNS
    assert history["epoch"].tolist() == [1, 2]
    assert history.notna().all().all()
    assert (history["epoch_time"] > 0).all() and (history["samples_per_sec"] > 0).all()
    assert history["lr"].tolist() == [0.001, 0.001]
    for name in ("accuracy", "top_k_acc", "val_accuracy", "val_top_k_acc"):
        assert history[name].between(0, 1).all()
    # the same numbers the checkpoints were judged by
    best = torch.load(run / "model_best.pth", weights_only=True)
    assert best["monitor"]["best"] == pytest.approx(history["val_loss"].min(), rel=1e-12)
    assert "monitor_best" not in best  # written and never read: the monitor part holds it
    assert not list(run.glob(".*.tmp"))  # written atomically: no temp file left behind


def test_a_crash_keeps_the_rows_written_so_far(tmp_path, synthetic_data_dir, monkeypatch):
    validate = Trainer._valid_epoch

    def crash_in_epoch_2(self, epoch):
        if epoch == 2:
            raise RuntimeError("simulated crash")
        return validate(self, epoch)

    monkeypatch.setattr(Trainer, "_valid_epoch", crash_in_epoch_2)
    cfg = shrink_config(tmp_path, synthetic_data_dir, epochs=3, len_epoch=2)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train_in_process("-c", write_config(tmp_path, cfg))
    (csv,) = (tmp_path / "saved" / "models").glob("*/*/metrics.csv")
    history = pd.read_csv(csv)
    assert history["epoch"].tolist() == [1]
    assert list(history.columns) == COLUMNS


def test_resume_continues_the_same_file_without_duplicates(two_epoch_run, tmp_path):
    original, before = two_epoch_run
    run = Path(shutil.copytree(original, tmp_path / original.name))  # leave the shared run as it was
    # resuming from epoch 1 re-runs epoch 2, whose row is already in the file
    train_in_process("-r", run / "checkpoint-epoch1.pth", "-o", "trainer.epochs=3")
    after = pd.read_csv(run / "metrics.csv")
    assert after["epoch"].tolist() == [1, 2, 3]
    assert list(after.columns) == COLUMNS
    pd.testing.assert_series_equal(after.iloc[0], before.iloc[0])  # rows before the resume point kept
    # a resume is exact: the re-run epoch gives the same numbers, to the last digit written
    timing = ["epoch_time", "samples_per_sec"]
    pd.testing.assert_series_equal(after.iloc[1].drop(timing), before.iloc[1].drop(timing), check_exact=True)


def test_append_replaces_rows_from_the_given_epoch_on(tmp_path):
    csv = tmp_path / "metrics.csv"
    for epoch in (1, 2, 3):
        append_epoch_row(csv, {"epoch": epoch, "loss": float(epoch)})
    append_epoch_row(csv, {"epoch": 2, "loss": 20.0, "extra": 1.0})
    history = pd.read_csv(csv)
    assert history["epoch"].tolist() == [1, 2]
    assert history["loss"].tolist() == [1.0, 20.0]
    assert math.isnan(history.loc[0, "extra"]) and history.loc[1, "extra"] == 1.0


def semicolons(text):
    return text.replace(",", ";")


def open_quote(text):
    first, second, rest = text.split("\n", 2)
    return f'{first}\n"{second}\n{rest}'


def cut_mid_line(text):
    return text[:-12]


def lost_last_row(text):
    return "".join(text.splitlines(keepends=True)[:2])


@pytest.mark.parametrize("damage, expected", [
    (semicolons, "has no epoch column (another separator than ',', or not a run's history)"),
    (open_quote, "line 2 has 1 of 10 fields: the file is cut short or damaged"),
    (cut_mid_line, "line 3 has no line break: the file is cut short"),
    (lost_last_row, "holds 1 rows, but the checkpoint has trained 2 epochs: rows were lost")])
def test_a_damaged_history_is_one_line_before_anything_trains(damage, expected, two_epoch_run, tmp_path,
                                                              monkeypatch, capsys):
    """Not a KeyError or ParserError after an epoch was trained, nor (cut at a row's end) rows silently lost."""
    from tests.helpers.cli import run_cli

    original, _ = two_epoch_run
    run = Path(shutil.copytree(original, tmp_path / "saved" / "models" / "Mnist_LeNet" / original.name))
    csv = run / "metrics.csv"
    csv.write_text(damage(csv.read_text()))
    damaged = csv.read_bytes()
    # the named run resubmitted (a requeued job): its folder's csv is not looked at before the epoch on main
    code, _, err = run_cli("train", ["-c", run / "config.json", "--run_id", run.name, "-o", "trainer.epochs=3",
                                     "-o", f"trainer.save_dir={tmp_path / 'saved'}"], monkeypatch, capsys)
    assert code == 2 and err.count("\n") == 1 and err.startswith(f"error: {csv} {expected}"), err
    assert "move it away to go on without the earlier rows (a new one starts at epoch 3)" in err
    assert csv.read_bytes() == damaged and not (run / "checkpoint-epoch3.pth").exists()
