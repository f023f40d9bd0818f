"""One run, one owner, one history: named runs, requeues and resumes never overwrite, fork or reseed
a run. Each case goes through train.py (or test.py) and checks exit codes, lines and files on disk."""
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch

from tests.conftest import REPO, run_dirs, run_script, shrink_config, write_config
from tests.test_edge_cases import one_error_line, snapshot, tmpfs, train_cli

pytestmark = pytest.mark.slow


def named(tmp_path, data, run_id, *extra, epochs=2, **trainer):
    """train.py -c <a shrunk config> --run_id NAME, in this process; returns (exit code, run folder)."""
    cfg = shrink_config(tmp_path, data, epochs=epochs, **trainer)
    path = write_config(tmp_path, cfg, f"{run_id}.json")
    return path, tmp_path / "saved" / "models" / cfg["name"] / run_id


def weights(path):
    return torch.load(path, weights_only=True)["state_dict"]


def same_weights(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ---- 1. -r A --run_id B into an existing run B -------------------------------------------------
def test_resume_into_another_existing_named_run_is_refused_naming_both(tmp_path, synthetic_data_dir, monkeypatch):
    config_a, run_a = named(tmp_path, synthetic_data_dir, "A")
    assert train_cli(["-c", config_a, "--run_id", "A"], monkeypatch) == 0
    other = shrink_config(tmp_path, synthetic_data_dir, epochs=2)
    other["optimizer"]["args"]["lr"] = 0.01
    assert train_cli(["-c", write_config(tmp_path, other, "b.json"), "--run_id", "B"], monkeypatch) == 0
    run_b = run_a.parent / "B"
    before = snapshot(tmp_path / "saved")
    partial = write_config(tmp_path, {"trainer": {**other["trainer"], "epochs": 3}}, "partial.json")
    for argv in (["-r", run_a / "model_latest.pth", "--run_id", "B", "-o", "trainer.epochs=3"],
                 ["-c", partial, "-r", run_a / "model_latest.pth", "--run_id", "B"]):
        code = train_cli(argv, monkeypatch)
        assert code == 2
        assert snapshot(tmp_path / "saved") == before  # B's checkpoints and metrics.csv untouched
    line = one_error_line(run_script("train.py", *argv), 2)
    assert f"run folder {run_b} already holds another run, not one started from {run_a / 'model_latest.pth'}" in line


def test_a_run_forked_from_a_checkpoint_continues_itself_when_requeued(tmp_path, synthetic_data_dir, monkeypatch):
    config_a, run_a = named(tmp_path, synthetic_data_dir, "A", epochs=1)
    assert train_cli(["-c", config_a, "--run_id", "A"], monkeypatch) == 0
    argv = ["-r", run_a / "model_latest.pth", "--run_id", "B", "-o", "trainer.epochs=2"]
    assert train_cli(argv, monkeypatch) == 0
    run_b = run_a.parent / "B"
    assert json.loads((run_b / "run.json").read_text())["origin"] == str((run_a / "model_latest.pth").resolve())
    assert pd.read_csv(run_b / "metrics.csv")["epoch"].tolist() == [2]
    assert train_cli([*argv[:-1], "trainer.epochs=3"], monkeypatch) == 0  # the requeue continues B
    assert pd.read_csv(run_b / "metrics.csv")["epoch"].tolist() == [2, 3]
    assert pd.read_csv(run_a / "metrics.csv")["epoch"].tolist() == [1]


def test_a_forked_run_is_requeued_after_its_source_checkpoint_is_gone(tmp_path, synthetic_data_dir, monkeypatch):
    """keep_last or a clean-up may delete A's checkpoint while B's job script still names it."""
    config_a, run_a = named(tmp_path, synthetic_data_dir, "A", epochs=1)
    assert train_cli(["-c", config_a, "--run_id", "A"], monkeypatch) == 0
    source = run_a / "checkpoint-epoch1.pth"
    argv = ["-r", source, "--run_id", "B", "-o", "trainer.epochs=2"]
    assert train_cli(argv, monkeypatch) == 0
    source.unlink()
    assert train_cli([*argv[:-1], "trainer.epochs=3"], monkeypatch) == 0  # B goes on from its own checkpoint
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
    assert train_cli(["-c", path, "--run_id", "s"], monkeypatch) == 0
    (run,) = run_dirs(tmp_path / "saved")
    drawn = json.loads((run / "config.json").read_text())["seed"]
    assert isinstance(drawn, int)
    assert train_cli(["-c", path, "--run_id", "s", "-o", "trainer.epochs=2"], monkeypatch) == 0
    assert torch.load(run / "model_latest.pth", weights_only=True)["config"]["seed"] == drawn
    # a job killed before its first checkpoint leaves config.json (and run.json) alone: start again there
    for checkpoint in run.glob("*.pth"):
        checkpoint.unlink()
    (run / "metrics.csv").unlink()
    assert train_cli(["-c", path, "--run_id", "s"], monkeypatch) == 0
    assert run_dirs(tmp_path / "saved") == [run]  # not s_1, not a new timestamp
    assert torch.load(run / "model_latest.pth", weights_only=True)["config"]["seed"] == drawn


def test_a_requeue_that_changes_the_experiment_by_a_flag_is_refused(tmp_path, synthetic_data_dir, monkeypatch):
    config, run = named(tmp_path, synthetic_data_dir, "x", epochs=1)
    assert train_cli(["-c", config, "--run_id", "x"], monkeypatch) == 0
    before = snapshot(tmp_path / "saved")
    for change in (["-o", "data_loader.args.validation_split=0.2"], ["--lr", "0.5"], ["--bs", "32"]):
        assert train_cli(["-c", config, "--run_id", "x", *change], monkeypatch) == 2
    assert snapshot(tmp_path / "saved") == before
    assert train_cli(["-c", config, "--run_id", "x", "-o", "trainer.epochs=2"], monkeypatch) == 0  # may change


def test_a_requeue_under_r_that_changes_the_experiment_by_a_flag_is_refused(tmp_path, synthetic_data_dir,
                                                                             monkeypatch):
    config, run = named(tmp_path, synthetic_data_dir, "x", epochs=1)
    assert train_cli(["-c", config, "--run_id", "x"], monkeypatch) == 0
    before = snapshot(tmp_path / "saved")
    resume = ["-r", run / "model_latest.pth", "--run_id", "x", "-o", "trainer.epochs=2"]
    assert train_cli([*resume, "-o", "data_loader.args.validation_split=0.5"], monkeypatch) == 2
    assert snapshot(tmp_path / "saved") == before  # the split did not change under the run
    assert train_cli(resume, monkeypatch) == 0



def test_a_named_run_whose_config_json_is_broken_or_gone_is_refused_not_retrained(tmp_path, synthetic_data_dir,
                                                                                monkeypatch):
    config, run = named(tmp_path, synthetic_data_dir, "x", epochs=1)
    assert train_cli(["-c", config, "--run_id", "x"], monkeypatch) == 0
    (run / "config.json").write_text('{"name": ')  # a hand edit gone wrong
    line = one_error_line(run_script("train.py", "-c", config, "--run_id", "x"), 2)
    assert f"{run / 'config.json'} cannot be read" in line  # not "just started by another job", forever
    (run / "config.json").unlink()
    before = snapshot(tmp_path / "saved")
    line = one_error_line(run_script("train.py", "-c", config, "--run_id", "x"), 2)
    assert f"run folder {run} holds checkpoints but no config.json" in line
    assert snapshot(tmp_path / "saved") == before  # its history was not trained over

# ---- 6. a kill between the renames of one epoch's save ----------------------------------------
KILL_AFTER_FIRST_RENAME = """
import os, runpy, signal, sys
real = os.replace
def replace(src, dst):
    real(src, dst)
    if str(src).endswith(".pending") and os.environ.get("KILL_EPOCH") and \\
            os.path.exists(os.path.join(os.path.dirname(str(dst)), ".checkpoint-epoch" + os.environ["KILL_EPOCH"]
                                        + ".pth.pending")):
        os.kill(os.getpid(), signal.SIGKILL)  # model_latest.pth is in place, the epoch's other files are not
os.replace = replace
sys.argv = ["train.py", *sys.argv[1:]]
runpy.run_path("train.py", run_name="__main__")
"""


def test_a_kill_between_the_renames_of_a_save_is_finished_by_the_next_start(tmp_path, synthetic_data_dir):
    config, run = named(tmp_path, synthetic_data_dir, "k", epochs=3)
    straight_cfg = shrink_config(tmp_path, synthetic_data_dir, epochs=3)
    assert run_script("train.py", "-c", write_config(tmp_path, straight_cfg, "s.json"), "--run_id", "straight"
                      ).returncode == 0
    killed = subprocess.run([sys.executable, "-c", KILL_AFTER_FIRST_RENAME, "-c", config, "--run_id", "k"],
                            cwd=REPO, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "KILL_EPOCH": "2"})
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert not (run / "checkpoint-epoch2.pth").exists() and (run / ".commit.json").exists()
    assert torch.load(run / "model_latest.pth", weights_only=True)["epoch"] == 2

    again = run_script("train.py", "-c", config, "--run_id", "k")
    assert again.returncode == 0, again.stderr[-2000:]
    assert "Resume training from epoch 3" in again.stdout + again.stderr
    straight = run.parent / "straight"
    assert same_weights(weights(run / "model_latest.pth"), weights(straight / "model_latest.pth"))
    assert same_weights(weights(run / "model_best.pth"), weights(straight / "model_best.pth"))
    timing = ["epoch_time", "samples_per_sec"]
    pd.testing.assert_frame_equal(pd.read_csv(run / "metrics.csv").drop(columns=timing),
                                  pd.read_csv(straight / "metrics.csv").drop(columns=timing))
    assert sorted(p.name for p in run.glob("checkpoint-epoch*.pth")) == [f"checkpoint-epoch{e}.pth" for e in (1, 2, 3)]
    assert not list(run.glob(".*pending*")) and not (run / ".commit.json").exists()


# ---- 7. stray files in a run folder ----------------------------------------------------------
def test_stray_files_in_a_run_folder_are_ignored(tmp_path, synthetic_data_dir, monkeypatch):
    config, run = named(tmp_path, synthetic_data_dir, "stray", epochs=2, keep_last=1)
    assert train_cli(["-c", config, "--run_id", "stray"], monkeypatch) == 0
    strays = ["checkpoint-epoch2 (copy).pth", "checkpoint-epoch2.bak.pth", "checkpoint-epoch9x.pth"]
    for name in strays:
        shutil.copy(run / "model_latest.pth", run / name)
    assert train_cli(["-c", config, "--run_id", "stray", "-o", "trainer.epochs=3"], monkeypatch) == 0
    assert sorted(p.name for p in run.glob("checkpoint-epoch*.pth")) == sorted(["checkpoint-epoch3.pth", *strays])
    assert torch.load(run / "model_latest.pth", weights_only=True)["epoch"] == 3


# ---- 8. a truncated newest checkpoint --------------------------------------------------------
def test_a_truncated_newest_checkpoint_falls_back_to_the_newest_intact_one(tmp_path, synthetic_data_dir):
    config, run = named(tmp_path, synthetic_data_dir, "t", epochs=2)
    assert run_script("train.py", "-c", config, "--run_id", "t").returncode == 0
    reference = weights(run / "model_latest.pth")
    data = (run / "model_latest.pth").read_bytes()
    (run / "model_latest.pth").write_bytes(data[: len(data) // 2])
    (run / "checkpoint-epoch2.pth").write_bytes(b"PK\x03\x04 not a zip")
    result = run_script("train.py", "-c", config, "--run_id", "t")
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout + result.stderr
    assert (f"model_latest.pth, checkpoint-epoch2.pth in {run} is truncated or corrupt; resuming from "
            "checkpoint-epoch1.pth (epoch 1, step 9)") in out
    assert "Resume training from epoch 2" in out
    assert same_weights(weights(run / "model_latest.pth"), reference)  # epoch 2 trained again, exactly


def test_resuming_a_broken_file_names_the_newest_intact_one(tmp_path, synthetic_data_dir, monkeypatch):
    config, run = named(tmp_path, synthetic_data_dir, "b", epochs=2)
    assert train_cli(["-c", config, "--run_id", "b"], monkeypatch) == 0
    (run / "model_latest.pth").write_bytes((run / "model_latest.pth").read_bytes()[:1000])
    line = one_error_line(run_script("train.py", "-r", run / "model_latest.pth"), 2)
    assert f"checkpoint {run / 'model_latest.pth'} is truncated or corrupt" in line
    assert f"the newest intact one there is {run / 'checkpoint-epoch2.pth'}" in line


# ---- 9. a full disk on the small files -------------------------------------------------------
def test_a_full_disk_on_a_small_file_is_one_line_and_exit_74(tmp_path, synthetic_data_dir):
    failed = set()
    for free_kb in (4, 8, 12, 16):  # a 64 KiB disk filled up to that: config.json ... info.log fail in turn
        with tmpfs(tmp_path / f"small{free_kb}", "64k") as small:
            (small / "filler").write_bytes(b"x" * (64 - free_kb) * 1024)
            cfg = shrink_config(tmp_path, synthetic_data_dir, epochs=1)
            cfg["trainer"]["save_dir"] = str(small / "saved")
            result = run_script("train.py", "-c", write_config(tmp_path, cfg), "--run_id", "full")
            line = one_error_line(result, 74)
            assert line.startswith("error: could not save ") and "no space left on the device" in line
            failed.add(line.removeprefix("error: could not save ").split(" in ")[0])
    assert len(failed & {"config.json", "run.json", "provenance.json", "info.log", "metrics.csv"}) >= 2, failed



def test_a_run_on_a_read_only_disk_is_one_line_for_train_and_test(tmp_path, synthetic_data_dir):
    with tmpfs(tmp_path / "archive", "8m") as archive:
        cfg = shrink_config(tmp_path, synthetic_data_dir, epochs=1)
        cfg["trainer"]["save_dir"] = str(archive / "saved")
        path = write_config(tmp_path, cfg)
        assert run_script("train.py", "-c", path, "--run_id", "ro").returncode == 0
        subprocess.run(["mount", "-o", "remount,ro", str(archive)], check=True)  # an archive of finished runs
        run = archive / "saved" / "models" / cfg["name"] / "ro"
        line = one_error_line(run_script("train.py", "-c", path, "--run_id", "ro", "-o", "trainer.epochs=2"), 2)
        assert f"cannot take run folder {run}: its lock file cannot be written (Read-only file system)" in line
        line = one_error_line(run_script("test.py", "-r", run / "model_best.pth"), 74)
        assert "could not save model_best.test.json" in line and "Read-only file system" in line

# ---- 10. run names -------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", ["x" * 300, "my run", "run*", "-r", ".hidden", "a/b"])
def test_a_run_id_unsafe_in_a_path_or_shell_is_refused_before_any_data(tmp_path, bad):
    cfg = shrink_config(tmp_path, tmp_path / "no-data-here", epochs=1)
    result = run_script("train.py", "-c", write_config(tmp_path, cfg), f"--run_id={bad}")
    line = one_error_line(result, 2)
    assert "is not a run name: use at most 100 letters, digits and _ . + -" in line
    assert not (tmp_path / "saved").exists()


def test_printed_commands_are_shell_quoted(tmp_path, synthetic_data_dir, monkeypatch, caplog):
    cfg = shrink_config(tmp_path, synthetic_data_dir, epochs=1)
    cfg["trainer"]["save_dir"] = str(tmp_path / "my runs" / "saved")
    result = run_script("train.py", "-c", write_config(tmp_path, cfg), "--run_id", "q")
    assert result.returncode == 0, result.stderr[-2000:]
    (resume,) = [line for line in result.stdout.splitlines() if "Train further: python train.py -r" in line]
    command = shlex.split(resume.split("Train further: ", 1)[1])
    assert command[3] == str(tmp_path / "my runs" / "saved" / "models" / cfg["name"] / "q" / "model_latest.pth")


# ---- 11. -r from a copied run folder -----------------------------------------------------------------
def test_resuming_a_copied_run_folder_logs_beside_the_copy(tmp_path, synthetic_data_dir, monkeypatch):
    config, run = named(tmp_path, synthetic_data_dir, "orig", epochs=1)
    assert train_cli(["-c", config, "--run_id", "orig"], monkeypatch) == 0
    copy = shutil.copytree(run, tmp_path / "elsewhere" / "models" / json.loads(config.read_text())["name"] / "orig")
    logs_before = snapshot(tmp_path / "saved" / "log")
    assert train_cli(["-r", copy / "model_latest.pth", "-o", "trainer.epochs=2"], monkeypatch) == 0
    assert snapshot(tmp_path / "saved" / "log") == logs_before
    log = tmp_path / "elsewhere" / "log" / copy.parent.name / "orig" / "info.log"
    assert "Resume training from epoch 2" in log.read_text()
    lone = shutil.copytree(run, tmp_path / "lone")  # not in a models/<name>/ tree: the log goes in the folder
    assert train_cli(["-r", lone / "model_latest.pth", "-o", "trainer.epochs=2"], monkeypatch) == 0
    assert "Resume training from epoch 2" in (lone / "info.log").read_text()



def test_resuming_a_checkpoint_beside_someone_elses_config_json_leaves_it_alone(tmp_path, synthetic_data_dir,
                                                                               monkeypatch):
    config, run = named(tmp_path, synthetic_data_dir, "x", epochs=1)
    assert train_cli(["-c", config, "--run_id", "x"], monkeypatch) == 0
    downloads = tmp_path / "Downloads"
    downloads.mkdir()
    shutil.copy(run / "model_latest.pth", downloads / "pretrained.pth")
    for name, text in (("metrics.csv", "step,value\n1,2\n"), ("config.json", '{"another": "tool"}')):
        (downloads / name).write_text(text)
        before = snapshot(downloads)
        line = one_error_line(run_script("train.py", "-r", downloads / "pretrained.pth", "-o", "trainer.epochs=2"), 2)
        assert f"{downloads} holds a config.json or metrics.csv that is not this run's" in line
        assert snapshot(downloads) == before

# ---- 12. a model with its own submodule named `module` ------------------------------------------------
def test_a_model_owning_a_submodule_named_module_survives_save_resume_and_test(tmp_path, synthetic_data_dir,
                                                                             monkeypatch):
    import model.model as module_arch
    import test as test_script

    class OwnsModule(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.module = torch.nn.Linear(28 * 28, 10)  # a user's name, not a wrapper's

        def forward(self, x):
            return torch.nn.functional.log_softmax(self.module(x.flatten(1)), dim=1)

    OwnsModule.__module__ = module_arch.__name__
    monkeypatch.setattr(module_arch, "OwnsModule", OwnsModule, raising=False)
    cfg = shrink_config(tmp_path, synthetic_data_dir, epochs=1)
    cfg["arch"] = {"type": "OwnsModule", "args": {}}
    config = write_config(tmp_path, cfg)
    assert train_cli(["-c", config, "--run_id", "m"], monkeypatch) == 0
    run = tmp_path / "saved" / "models" / cfg["name"] / "m"
    saved = torch.load(run / "model_latest.pth", weights_only=True)
    assert sorted(saved["state_dict"]) == ["module.bias", "module.weight"]
    assert train_cli(["-r", run / "model_latest.pth", "-o", "trainer.epochs=2"], monkeypatch) == 0
    test_script.main(test_script.parse_args(["-r", str(run / "model_latest.pth")]))
    result = json.loads((run / "model_latest.test.json").read_text())
    assert result["n_samples"] == 200 and result["metrics"]["accuracy"] > 0.1


def test_a_classic_dataparallel_checkpoint_loads_into_the_plain_model(tmp_path, synthetic_data_dir, monkeypatch):
    import test as test_script

    config, run = named(tmp_path, synthetic_data_dir, "dp", epochs=1)
    assert train_cli(["-c", config, "--run_id", "dp"], monkeypatch) == 0
    checkpoint = torch.load(run / "model_best.pth", weights_only=True)
    checkpoint["state_dict"] = {f"module.{k}": v for k, v in checkpoint["state_dict"].items()}  # classic, n_gpu > 1
    classic = tmp_path / "classic" / "model_best.pth"
    classic.parent.mkdir()
    torch.save(checkpoint, classic)
    test_script.main(test_script.parse_args(["-r", str(run / "model_best.pth")]))
    test_script.main(test_script.parse_args(["-r", str(classic)]))
    ours, theirs = (json.loads(p.with_name("model_best.test.json").read_text())["metrics"] for p in (run / "x",
                                                                                                    classic))
    assert ours == theirs
