"""A run folder's files survive what happens to them: a kill between the renames of a save, stray files, a
truncated newest checkpoint, a full or read-only disk, unsafe run names, a copied folder, a model whose own
submodule is named `module`. Each case goes through train.py (or test.py) and checks exit codes, lines and files."""
import json
import os
import shlex
import shutil
import subprocess
import sys

import pandas as pd
import pytest
import torch

from tests.helpers.cli import run_cli, run_script
from tests.helpers.configs import shrink_config, write_config
from tests.helpers.errors import one_error_line
from tests.helpers.paths import REPO
from tests.helpers.runs import named, same_weights, weights
from tests.helpers.snapshots import snapshot_bytes
from tests.helpers.tmpfs import tmpfs

pytestmark = pytest.mark.slow


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
    assert run_cli("train", ["-c", config, "--run_id", "stray"], monkeypatch).returncode == 0
    strays = ["checkpoint-epoch2 (copy).pth", "checkpoint-epoch2.bak.pth", "checkpoint-epoch9x.pth"]
    for name in strays:
        shutil.copy(run / "model_latest.pth", run / name)
    assert run_cli("train", ["-c", config, "--run_id", "stray", "-o", "trainer.epochs=3"], monkeypatch).returncode == 0
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



def test_a_named_run_with_no_intact_checkpoint_left_says_so_and_starts_afresh(tmp_path, synthetic_data_dir):
    config, run = named(tmp_path, synthetic_data_dir, "z", epochs=1)
    assert run_script("train.py", "-c", config, "--run_id", "z").returncode == 0
    reference = weights(run / "model_latest.pth")
    for name in ("model_latest.pth", "checkpoint-epoch1.pth"):
        (run / name).write_bytes(b"PK\x03\x04 not a zip")
    result = run_script("train.py", "-c", config, "--run_id", "z")
    assert result.returncode == 0, result.stderr[-2000:]
    assert (f"model_latest.pth, checkpoint-epoch1.pth in {run} is truncated or corrupt; no intact checkpoint is "
            "left: starting afresh") in result.stdout + result.stderr
    assert same_weights(weights(run / "model_latest.pth"), reference)  # the run's own seed: the same epoch 1

def test_resuming_a_broken_file_names_the_newest_intact_one(tmp_path, synthetic_data_dir, monkeypatch):
    config, run = named(tmp_path, synthetic_data_dir, "b", epochs=2)
    assert run_cli("train", ["-c", config, "--run_id", "b"], monkeypatch).returncode == 0
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
    assert run_cli("train", ["-c", config, "--run_id", "orig"], monkeypatch).returncode == 0
    copy = shutil.copytree(run, tmp_path / "elsewhere" / "models" / json.loads(config.read_text())["name"] / "orig")
    logs_before = snapshot_bytes(tmp_path / "saved" / "log")
    assert run_cli("train", ["-r", copy / "model_latest.pth", "-o", "trainer.epochs=2"], monkeypatch).returncode == 0
    assert snapshot_bytes(tmp_path / "saved" / "log") == logs_before
    log = tmp_path / "elsewhere" / "log" / copy.parent.name / "orig" / "info.log"
    assert "Resume training from epoch 2" in log.read_text()
    lone = shutil.copytree(run, tmp_path / "lone")  # not in a models/<name>/ tree: the log goes in the folder
    assert run_cli("train", ["-r", lone / "model_latest.pth", "-o", "trainer.epochs=2"], monkeypatch).returncode == 0
    assert "Resume training from epoch 2" in (lone / "info.log").read_text()



def test_resuming_a_checkpoint_beside_someone_elses_config_json_leaves_it_alone(tmp_path, synthetic_data_dir,
                                                                               monkeypatch):
    config, run = named(tmp_path, synthetic_data_dir, "x", epochs=1)
    assert run_cli("train", ["-c", config, "--run_id", "x"], monkeypatch).returncode == 0
    downloads = tmp_path / "Downloads"
    downloads.mkdir()
    shutil.copy(run / "model_latest.pth", downloads / "pretrained.pth")
    for name, text in (("metrics.csv", "step,value\n1,2\n"), ("config.json", '{"another": "tool"}')):
        (downloads / name).write_text(text)
        before = snapshot_bytes(downloads)
        line = one_error_line(run_script("train.py", "-r", downloads / "pretrained.pth", "-o", "trainer.epochs=2"), 2)
        assert f"{downloads} holds a config.json or metrics.csv that is not this run's" in line
        assert snapshot_bytes(downloads) == before

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
    assert run_cli("train", ["-c", config, "--run_id", "m"], monkeypatch).returncode == 0
    run = tmp_path / "saved" / "models" / cfg["name"] / "m"
    saved = torch.load(run / "model_latest.pth", weights_only=True)
    assert sorted(saved["state_dict"]) == ["module.bias", "module.weight"]
    assert run_cli("train", ["-r", run / "model_latest.pth", "-o", "trainer.epochs=2"], monkeypatch).returncode == 0
    test_script.main(test_script.parse_args(["-r", str(run / "model_latest.pth")]))
    result = json.loads((run / "model_latest.test.json").read_text())
    assert result["n_samples"] == 200 and result["metrics"]["accuracy"] > 0.1


def test_a_classic_dataparallel_checkpoint_loads_into_the_plain_model(tmp_path, synthetic_data_dir, monkeypatch):
    import test as test_script

    config, run = named(tmp_path, synthetic_data_dir, "dp", epochs=1)
    assert run_cli("train", ["-c", config, "--run_id", "dp"], monkeypatch).returncode == 0
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
