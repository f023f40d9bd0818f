"""A full disk during a trial (issue 25, case 5): the trial's save fails with one line naming the tune.py
command and exit 74; the trial is queued again as after a stop (no kill counted), and once space is freed the
same command continues its run to the value and weights of an uninterrupted trial."""
import shutil

import pytest
from optuna.trial import TrialState

from search.recovery import KILLS
from tests.helpers.runs import same_weights, weights
from tests.helpers.tmpfs import tmpfs
from tests.helpers.tune_setup import load_study, signal_when, start_tune, tune_config, write
from tests.synthetic_mnist import write_synthetic_mnist

ONE_POINT = {"optimizer.args.lr": {"type": "categorical", "choices": [0.002]}}
LEFT_FREE = 300_000  # bytes: the study's SQLite file and the logs still grow, an epoch's checkpoints (~1 MB) do not fit


def fill_when(process, path, disk):
    """Once `path` exists (epoch 1 saved), fill `disk` up to LEFT_FREE bytes; the ballast file to free it."""
    ballast = disk / "ballast"
    assert signal_when(process, path, 0), "the trial ended before its first checkpoint"  # signal 0: nothing sent
    ballast.write_bytes(b"\0" * (shutil.disk_usage(disk).free - LEFT_FREE))
    return ballast


@pytest.mark.slow
def test_a_trial_stopped_by_a_full_disk_continues_after_space_is_freed(tmp_path):
    data = write_synthetic_mnist(tmp_path / "data", n_train=1200, n_test=10)
    config = tune_config(tmp_path, data, space=ONE_POINT, trainer={"epochs": 3}, trials=1)
    config["data_loader"]["args"]["batch_size"] = 4  # ~270 batches an epoch: time to fill the disk inside one
    reference = start_tune(write(tmp_path, config, "reference.json"))
    assert reference.wait(timeout=300) == 0, reference.stderr.read()[-3000:]
    uninterrupted = tmp_path / "saved" / "models" / config["name"] / "s-trial0"

    with tmpfs(tmp_path / "small", "8m") as disk:
        config["trainer"]["save_dir"] = str(disk / "saved")  # the study's default SQLite file is there too
        path = write(tmp_path, config)
        run = disk / "saved" / "models" / config["name"] / "s-trial0"
        full = start_tune(path)
        ballast = fill_when(full, run / "checkpoint-epoch1.pth", disk)
        out, err = full.communicate(timeout=300)
        assert full.returncode == 74, out[-2000:] + err[-3000:]
        lines = err.splitlines()
        assert len(lines) == 1 and "Traceback" not in err, err[-3000:]
        assert lines[0].startswith("error: trial 0 (s-trial0): could not save ") and "no space left" in lines[0]
        assert f"free space, then resume with python tune.py -c {path} (the same command)" in lines[0]
        trials = queued_then_continued(config, path, ballast)
        assert [p.name for p in run.parent.iterdir()] == ["s-trial0"]
        reference_value = load_study({**config, "trainer": {**config["trainer"], "save_dir": str(tmp_path / "saved")}})
        assert trials[1].value == reference_value.best_value
        for name in ("model_latest.pth", "model_best.pth"):
            assert same_weights(weights(run / name), weights(uninterrupted / name)), name


def queued_then_continued(config, path, ballast):
    """The trial stopped by the full disk is queued again, no kill counted; once `ballast` is gone, the same
    command continues its run from epoch 2 to COMPLETE. Returns the study's trials."""
    trials = load_study(config).trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.WAITING]
    assert trials[1].system_attrs[KILLS] == 0  # not a kill: the retry limit is untouched
    ballast.unlink()
    again = start_tune(path)
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, out[-2000:] + err[-3000:]
    assert "Resume training from epoch 2" in out
    trials = load_study(config).trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    return trials


def fill_up(disk):
    """Write a ballast file until the disk refuses a byte; return it (unlink it to free the space)."""
    ballast = disk / "ballast"
    with ballast.open("wb", buffering=0) as handle:  # unbuffered: the refused write is the last one
        try:
            while True:
                handle.write(b"\0" * 4096)
        except OSError:
            pass
    return ballast


def to_page_end(path, page=4096):
    """Pad `path` (a log its writer appends to) to a whole page, so that its next write needs a page of its own
    (tmpfs fills a file's last page before it asks for space)."""
    with path.open("a", encoding="utf-8") as handle:
        handle.write("\n" * (-path.stat().st_size % page))


@pytest.mark.slow
@pytest.mark.parametrize("full", ["info.log", "TensorBoard's event file"])
def test_a_full_disk_on_a_log_file_names_the_tune_command_and_the_trial_continues(tmp_path, full):
    data = write_synthetic_mnist(tmp_path / "data", n_train=1200, n_test=10)
    config = tune_config(tmp_path, data, space=ONE_POINT, trainer={"epochs": 2}, trials=1,
                         storage=f"sqlite:///{tmp_path / 'study.db'}")  # the study can be told: not on the full disk
    config["data_loader"]["args"]["batch_size"] = 4  # ~270 batches an epoch: time to fill the disk inside one
    config["trainer"]["tensorboard"] = full != "info.log"
    with tmpfs(tmp_path / "small", "8m") as disk:
        config["trainer"]["save_dir"] = str(disk / "saved")
        path = write(tmp_path, config)
        run = disk / "saved" / "models" / config["name"] / "s-trial0"
        logs = disk / "saved" / "log" / config["name"] / "s-trial0"
        process = start_tune(path)
        assert signal_when(process, run / "checkpoint-epoch1.pth", 0), "the trial ended before its first checkpoint"
        to_page_end(logs / "info.log")  # epoch 2's lines reach info.log before its checkpoints are saved
        if full != "info.log":  # TensorBoard's writes in epoch 2 come first, and info.log has room for its lines
            with (logs / "info.log").open("a", encoding="utf-8") as handle:
                handle.write("\n")
            (events,) = logs.glob("events.out.tfevents.*")
            to_page_end(events)
        ballast = fill_up(disk)
        out, err = process.communicate(timeout=300)
        assert process.returncode == 74 and "Traceback" not in err, out[-2000:] + err[-3000:]
        (line,) = err.splitlines()
        assert line.startswith(f"error: trial 0 (s-trial0): could not save {full} in {logs}: no space"), line
        assert line.endswith(f"free space, then resume with python tune.py -c {path} (the same command)"), line
        trials = queued_then_continued(config, path, ballast)
        assert trials[1].user_attrs["epochs"] == 2 and trials[1].user_attrs["run_id"] == "s-trial0"
