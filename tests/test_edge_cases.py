"""Edge cases that once lost training silently or ended in a traceback. Each runs through the
real entry point and checks the exit code, the one line it prints, and the files on disk."""
import json
import logging
import math
import signal

import pandas as pd
import pytest
import torch

import trainer.trainer as trainer_module
from tests.helpers.cli import run_cli, run_script
from tests.helpers.configs import shrink_config, write_config
from tests.helpers.errors import one_error_line
from tests.helpers.runs import run_dirs
from tests.helpers.snapshots import snapshot_bytes
from tests.helpers.tmpfs import tmpfs

N_TRAIN = 540  # synthetic training split (600 less 10 % validation)


# ---- 1. mid-epoch resume with another batch size --------------------------------
@pytest.mark.slow
def test_mid_epoch_resume_with_another_batch_size_trains_the_rest_of_the_epoch(tmp_path, synthetic_data_dir,
                                                                               monkeypatch):
    config = shrink_config(tmp_path, synthetic_data_dir, epochs=2)
    config["data_loader"]["args"]["batch_size"] = 4
    run_batch = trainer_module.Trainer._run_batch

    def sigterm_in_batch_22(self, *args, **kwargs):
        if self.batch_in_epoch == 21:
            signal.raise_signal(signal.SIGTERM)
        return run_batch(self, *args, **kwargs)

    monkeypatch.setattr(trainer_module.Trainer, "_run_batch", sigterm_in_batch_22)
    assert run_cli("train", ["-c", write_config(tmp_path, config)], monkeypatch).returncode == 143
    (run,) = run_dirs(tmp_path / "saved")
    assert torch.load(run / "model_latest.pth", weights_only=True)["data_stream"]["samples"] == 22 * 4

    resumed = run_script("train.py", "-r", run / "model_latest.pth", "--bs", "64")
    assert resumed.returncode == 0, resumed.stderr
    rest = math.ceil((N_TRAIN - 88) / 64)  # 452 samples left: 8 batches of 64
    assert "Resume training from epoch 1, batch 3" in resumed.stdout
    assert "the epoch continues after the 88 samples already trained" in resumed.stdout
    assert "lr_scheduler.step()" not in resumed.stderr
    epoch1 = torch.load(run / "checkpoint-epoch1.pth", weights_only=True)
    assert epoch1["global_step"] == 22 + rest
    assert (pd.read_csv(run / "metrics.csv")["samples_per_sec"] > 0).all()


# ---- 2. misspelt keys -------------------------------------------------------------
@pytest.mark.slow
def test_a_misspelt_section_is_named_with_the_right_name(tmp_path, synthetic_data_dir):
    config = shrink_config(tmp_path, synthetic_data_dir, epochs=1, len_epoch=1)
    config["lr_schedular"] = config.pop("lr_scheduler")
    result = run_script("train.py", "-c", write_config(tmp_path, config))
    assert result.returncode == 0, result.stderr
    assert ("Warning: config has a section 'lr_schedular' that the template does not read; "
            "did you mean 'lr_scheduler'?") in result.stdout
    # a user's own section far from every name is theirs: no warning
    config["my_notes"] = {"author": "me"}
    result = run_script("train.py", "-c", write_config(tmp_path, config))
    assert "section 'my_notes'" not in result.stdout


# ---- 3. verbosity 0 -----------------------------------------------------------------
@pytest.mark.slow
def test_verbosity_0_prints_neither_the_model_nor_the_cpu_note(tmp_path, synthetic_data_dir):
    config = shrink_config(tmp_path, synthetic_data_dir, epochs=1, len_epoch=2, verbosity=0)
    trained = run_script("train.py", "-c", write_config(tmp_path, config))
    assert trained.returncode == 0, trained.stderr
    (run,) = run_dirs(tmp_path / "saved")
    tested = run_script("test.py", "-r", run / "model_latest.pth")
    assert tested.returncode == 0, tested.stderr
    for result in (trained, tested):
        assert "Trainable parameters" not in result.stdout and "GPU" not in result.stdout + result.stderr
    assert trained.stdout == ""
    # test.py's results are what it is for: its table shows at verbosity 0 too (docs/outputs.md), nothing else
    assert [line.split(":")[0].strip() for line in tested.stdout.splitlines()] == [
        "loss", "accuracy", "top_k_acc", "samples", "Results saved to " + str(run / "model_latest.test.json")]
    assert json.loads((run / "model_latest.test.json").read_text())["n_samples"] == 200


# ---- 5. a finished run -----------------------------------------------------------------
@pytest.mark.slow
def test_resuming_a_finished_run_says_so_and_changes_nothing(tmp_path, synthetic_data_dir):
    config = shrink_config(tmp_path, synthetic_data_dir, epochs=2, len_epoch=2)
    assert run_script("train.py", "-c", write_config(tmp_path, config)).returncode == 0
    (run,) = run_dirs(tmp_path / "saved")
    before = snapshot_bytes(tmp_path / "saved")
    again = run_script("train.py", "-r", run / "model_latest.pth")
    assert again.returncode == 0, again.stderr
    assert ("Nothing to train: the checkpoint has trained 2 epochs and trainer.epochs is 2. To train further: "
            f"python train.py -r {run / 'model_latest.pth'} -o trainer.epochs=4") in again.stdout
    assert "Resume training from epoch 3" not in again.stdout
    assert snapshot_bytes(tmp_path / "saved") == before


# ---- 6. a save_dir that cannot be written ------------------------------------------------
@pytest.mark.slow
def test_read_only_save_dir_is_refused_before_the_data_is_loaded(tmp_path, synthetic_data_dir):
    with tmpfs(tmp_path / "ro", "1m", read_only=True) as ro:
        config = shrink_config(tmp_path, synthetic_data_dir)
        config["trainer"]["save_dir"] = str(ro / "saved")
        result = run_script("train.py", "-c", write_config(tmp_path, config))
        line = one_error_line(result, 2)
        assert f"trainer.save_dir {ro / 'saved'} cannot be used: {ro} cannot be written" in line
        assert "-o trainer.save_dir=PATH" in line
        assert "Trainable parameters" not in result.stdout  # stopped before building anything
        assert list(ro.iterdir()) == []


# ---- 7. a full disk while saving -------------------------------------------------------
@pytest.mark.slow
def test_full_disk_while_saving_is_one_line_and_checkpoints_agree(tmp_path, synthetic_data_dir):
    # epoch 1's three files (~0.36 MB each) fit; epoch 2's new ones do not fit beside them
    with tmpfs(tmp_path / "small", "1600k") as small:
        config = shrink_config(tmp_path, synthetic_data_dir, epochs=3)
        config["trainer"]["save_dir"] = str(small / "saved")
        result = run_script("train.py", "-c", write_config(tmp_path, config))
        line = one_error_line(result, 74)
        (run,) = run_dirs(small / "saved")
        assert f"could not save model_latest.pth, checkpoint-epoch2.pth, model_best.pth, metrics.csv in {run}" in line
        assert "no space left on the device (it needs" in line and "MB are free" in line
        assert f"resume with python train.py -r {run / 'model_latest.pth'}" in line
        latest, best = (torch.load(run / name, weights_only=True) for name in ("model_latest.pth", "model_best.pth"))
        assert latest["epoch"] == best["epoch"] == 1
        assert latest["monitor"] == best["monitor"]
        assert sorted(p.name for p in run.glob("*.pth")) == ["checkpoint-epoch1.pth", "model_best.pth",
                                                              "model_latest.pth"]
        assert not list(run.glob(".*tmp*"))


# ---- 8. OneCycleLR resumed past its total_steps -----------------------------------------
@pytest.mark.slow
def test_one_cycle_resumed_past_its_steps_is_refused_before_training(tmp_path, synthetic_data_dir):
    config = shrink_config(tmp_path, synthetic_data_dir, epochs=2)
    config["lr_scheduler"] = {"type": "OneCycleLR", "args": {"max_lr": 0.01, "total_steps": 18}, "step": "batch"}
    assert run_script("train.py", "-c", write_config(tmp_path, config)).returncode == 0
    (run,) = run_dirs(tmp_path / "saved")
    before = snapshot_bytes(tmp_path / "saved")
    result = run_script("train.py", "-r", run / "model_latest.pth", "-o", "trainer.epochs=3")
    line = one_error_line(result, 2)
    assert "OneCycleLR stops after total_steps=18 optimizer steps, but trainer.epochs=3 needs 27" in line
    assert "set lr_scheduler.args.total_steps to 27 or more" in line
    assert snapshot_bytes(tmp_path / "saved") == before


def test_unknown_monitor_metric_lists_only_metrics():
    from runs.monitor import Monitor

    monitor = Monitor("min val_loss")
    log = {"epoch": 1, "loss": 0.5, "accuracy": 0.9, "lr": 0.1, "epoch_time": 2.0, "samples_per_sec": 9.0}
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logging.getLogger("trainer").addHandler(handler)
    try:
        assert monitor.update(log, 1) is False
    finally:
        logging.getLogger("trainer").removeHandler(handler)
    assert records[0].getMessage().endswith("Monitor one of: loss, accuracy")

