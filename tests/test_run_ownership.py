"""One run, one owner, one history: named runs, requeues and resumes never overwrite, fork or reseed
a run. Each case goes through train.py (or test.py) and checks exit codes, lines and files on disk."""
import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch

from tests.helpers.cli import run_cli, run_script
from tests.helpers.configs import shrink_config, write_config
from tests.helpers.errors import one_error_line
from tests.helpers.paths import REPO
from tests.helpers.runs import named, run_dirs
from tests.helpers.snapshots import snapshot_bytes

pytestmark = pytest.mark.slow


# ---- 1. -r A --run_id B into an existing run B -------------------------------------------------
def test_resume_into_another_existing_named_run_is_refused_naming_both(tmp_path, synthetic_data_dir, monkeypatch):
    config_a, run_a = named(tmp_path, synthetic_data_dir, "A")
    assert run_cli("train", ["-c", config_a, "--run_id", "A"], monkeypatch).returncode == 0
    other = shrink_config(tmp_path, synthetic_data_dir, epochs=2)
    other["optimizer"]["args"]["lr"] = 0.01
    other_path = write_config(tmp_path, other, "b.json")
    assert run_cli("train", ["-c", other_path, "--run_id", "B"], monkeypatch).returncode == 0
    run_b = run_a.parent / "B"
    before = snapshot_bytes(tmp_path / "saved")
    partial = write_config(tmp_path, {"trainer": {**other["trainer"], "epochs": 3}}, "partial.json")
    for argv in (["-r", run_a / "model_latest.pth", "--run_id", "B", "-o", "trainer.epochs=3"],
                 ["-c", partial, "-r", run_a / "model_latest.pth", "--run_id", "B"]):
        code = run_cli("train", argv, monkeypatch).returncode
        assert code == 2
        assert snapshot_bytes(tmp_path / "saved") == before  # B's checkpoints and metrics.csv untouched
    line = one_error_line(run_script("train.py", *argv), 2)
    assert f"run folder {run_b} already holds another run, not one started from {run_a / 'model_latest.pth'}" in line


def test_a_run_forked_from_a_checkpoint_continues_itself_when_requeued(tmp_path, synthetic_data_dir, monkeypatch):
    config_a, run_a = named(tmp_path, synthetic_data_dir, "A", epochs=1)
    assert run_cli("train", ["-c", config_a, "--run_id", "A"], monkeypatch).returncode == 0
    argv = ["-r", run_a / "model_latest.pth", "--run_id", "B", "-o", "trainer.epochs=2"]
    assert run_cli("train", argv, monkeypatch).returncode == 0
    run_b = run_a.parent / "B"
    assert json.loads((run_b / "run.json").read_text())["origin"] == str((run_a / "model_latest.pth").resolve())
    assert pd.read_csv(run_b / "metrics.csv")["epoch"].tolist() == [2]
    assert run_cli("train", [*argv[:-1], "trainer.epochs=3"], monkeypatch).returncode == 0  # the requeue continues B
    assert pd.read_csv(run_b / "metrics.csv")["epoch"].tolist() == [2, 3]
    assert pd.read_csv(run_a / "metrics.csv")["epoch"].tolist() == [1]


def test_a_forked_run_is_requeued_after_its_source_checkpoint_is_gone(tmp_path, synthetic_data_dir, monkeypatch):
    """keep_last or a clean-up may delete A's checkpoint while B's job script still names it."""
    config_a, run_a = named(tmp_path, synthetic_data_dir, "A", epochs=1)
    assert run_cli("train", ["-c", config_a, "--run_id", "A"], monkeypatch).returncode == 0
    source = run_a / "checkpoint-epoch1.pth"
    argv = ["-r", source, "--run_id", "B", "-o", "trainer.epochs=2"]
    assert run_cli("train", argv, monkeypatch).returncode == 0
    source.unlink()
    # B goes on from its own checkpoint
    assert run_cli("train", [*argv[:-1], "trainer.epochs=3"], monkeypatch).returncode == 0
    assert pd.read_csv(run_a.parent / "B" / "metrics.csv")["epoch"].tolist() == [2, 3]
    # a run that never existed still needs the file: one line
    line = one_error_line(run_script("train.py", "-r", source, "--run_id", "C"), 2)
    assert line == f"error: checkpoint {source} does not exist; pass the path of a .pth file under saved/models/ " \
                   "with -r"


# ---- 2. two jobs on one run ---------------------------------------------------------------------
def test_a_second_job_on_a_held_run_exits_2_naming_the_holder(tmp_path, synthetic_data_dir):
    config, run = named(tmp_path, synthetic_data_dir, "job", epochs=500)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    log = tmp_path / "first.log"
    first = subprocess.Popen([sys.executable, "train.py", "-c", config, "--run_id", "job"], cwd=REPO, env=env,
                             stdout=log.open("w"), stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while "Train Epoch: 2 [" not in log.read_text():
            assert first.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.05)
        second = run_script("train.py", "-c", config, "--run_id", "job")
        line = one_error_line(second, 2)
        assert f"run folder {run} is in use by host " in line and f" pid {first.pid} since " in line
        assert "Trainable parameters" not in second.stdout  # refused before building anything
        first.terminate()
        assert first.wait(timeout=120) == 143
    finally:
        first.kill()
    epochs = pd.read_csv(run / "metrics.csv")["epoch"].tolist()
    assert epochs == list(range(1, len(epochs) + 1))  # one writer: no row lost or repeated
    assert [p.name for p in run.parent.iterdir()] == ["job"]
    assert not (run / ".lock").exists()  # let go at the end



def test_a_job_whose_lock_file_was_removed_stops_before_writing_beside_the_new_owner(tmp_path, synthetic_data_dir):
    config, run = named(tmp_path, synthetic_data_dir, "job", epochs=500)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    jobs, logs = [], [tmp_path / "first.log", tmp_path / "second.log"]
    try:
        for log in logs:
            jobs.append(subprocess.Popen([sys.executable, "train.py", "-c", config, "--run_id", "job"], cwd=REPO,
                                         env=env, stdout=log.open("w"), stderr=subprocess.PIPE, text=True))
            deadline = time.monotonic() + 120
            while "Saving checkpoint" not in log.read_text():
                assert jobs[-1].poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
                time.sleep(0.05)
            if len(jobs) == 1:  # a long epoch, during which a cleanup of dot files lets a second job in
                jobs[0].send_signal(signal.SIGSTOP)
                (run / ".lock").unlink()
        jobs[0].send_signal(signal.SIGCONT)  # its next save: it finds its lock file gone
        assert jobs[0].wait(timeout=120) == 2
        assert "the lock file of run folder" in jobs[0].stderr.read()
        time.sleep(3)  # epochs of the second job: had the first removed its lock file, it would stop too
        assert jobs[1].poll() is None and (run / ".lock").exists(), jobs[1].stderr.read() if jobs[1].poll() else ""
    finally:
        for job in jobs:
            job.kill()

# ---- 3. seed null is drawn once --------------------------------------------------------------
def test_a_named_run_keeps_the_seed_it_drew_and_its_folder_when_killed_before_its_first_checkpoint(
        tmp_path, synthetic_data_dir, monkeypatch):
    cfg = shrink_config(tmp_path, synthetic_data_dir, epochs=1)
    cfg["seed"] = None
    path = write_config(tmp_path, cfg)
    assert run_cli("train", ["-c", path, "--run_id", "s"], monkeypatch).returncode == 0
    (run,) = run_dirs(tmp_path / "saved")
    drawn = json.loads((run / "config.json").read_text())["seed"]
    assert isinstance(drawn, int)
    assert run_cli("train", ["-c", path, "--run_id", "s", "-o", "trainer.epochs=2"], monkeypatch).returncode == 0
    assert torch.load(run / "model_latest.pth", weights_only=True)["config"]["seed"] == drawn
    # a job killed before its first checkpoint leaves config.json (and run.json) alone: start again there
    for checkpoint in run.glob("*.pth"):
        checkpoint.unlink()
    (run / "metrics.csv").unlink()
    assert run_cli("train", ["-c", path, "--run_id", "s"], monkeypatch).returncode == 0
    assert run_dirs(tmp_path / "saved") == [run]  # not s_1, not a new timestamp
    assert torch.load(run / "model_latest.pth", weights_only=True)["config"]["seed"] == drawn


def test_a_requeue_that_changes_the_experiment_by_a_flag_is_refused(tmp_path, synthetic_data_dir, monkeypatch):
    config, run = named(tmp_path, synthetic_data_dir, "x", epochs=1)
    assert run_cli("train", ["-c", config, "--run_id", "x"], monkeypatch).returncode == 0
    before = snapshot_bytes(tmp_path / "saved")
    for change in (["-o", "data_loader.args.validation_split=0.2"], ["--lr", "0.5"], ["--bs", "32"]):
        assert run_cli("train", ["-c", config, "--run_id", "x", *change], monkeypatch).returncode == 2
    assert snapshot_bytes(tmp_path / "saved") == before
    epochs = ["-o", "trainer.epochs=2"]  # may change
    assert run_cli("train", ["-c", config, "--run_id", "x", *epochs], monkeypatch).returncode == 0


def test_a_requeue_under_r_that_changes_the_experiment_by_a_flag_is_refused(tmp_path, synthetic_data_dir,
                                                                             monkeypatch):
    config, run = named(tmp_path, synthetic_data_dir, "x", epochs=1)
    assert run_cli("train", ["-c", config, "--run_id", "x"], monkeypatch).returncode == 0
    before = snapshot_bytes(tmp_path / "saved")
    resume = ["-r", run / "model_latest.pth", "--run_id", "x", "-o", "trainer.epochs=2"]
    assert run_cli("train", [*resume, "-o", "data_loader.args.validation_split=0.5"], monkeypatch).returncode == 2
    assert snapshot_bytes(tmp_path / "saved") == before  # the split did not change under the run
    assert run_cli("train", resume, monkeypatch).returncode == 0



def test_a_named_run_whose_config_json_is_broken_or_gone_is_refused_not_retrained(tmp_path, synthetic_data_dir,
                                                                                monkeypatch):
    config, run = named(tmp_path, synthetic_data_dir, "x", epochs=1)
    assert run_cli("train", ["-c", config, "--run_id", "x"], monkeypatch).returncode == 0
    (run / "config.json").write_text('{"name": ')  # a hand edit gone wrong
    line = one_error_line(run_script("train.py", "-c", config, "--run_id", "x"), 2)
    assert f"{run / 'config.json'} cannot be read" in line  # not "just started by another job", forever
    (run / "config.json").unlink()
    before = snapshot_bytes(tmp_path / "saved")
    line = one_error_line(run_script("train.py", "-c", config, "--run_id", "x"), 2)
    assert f"run folder {run} holds checkpoints but no config.json" in line
    assert snapshot_bytes(tmp_path / "saved") == before  # its history was not trained over
