"""provenance.json: what produced a run (command line, versions, device, git state)."""
import json
import platform
import subprocess
import sys

import pytest
import torch
import torchvision

from tests.helpers.cli import train_in_process
from tests.helpers.paths import REPO
from tests.helpers.tracker_stores import mlflow_runs
from utils import provenance as provenance_module
from utils.provenance import git_state


def git(root, *args):
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True).stdout


def test_a_run_records_its_command_versions_device_and_commit(small_config, monkeypatch):
    argv = ["train.py", "-c", str(small_config), "-o", "trainer.epochs=1", "-o", "+trainer.len_epoch=1"]
    monkeypatch.setattr(sys, "argv", argv)  # what a user typed
    config = train_in_process(*argv[1:])
    provenance = json.loads((config.save_dir / "provenance.json").read_text())
    assert provenance["command"] == [sys.executable, *argv]
    assert provenance["python"] == platform.python_version()
    assert provenance["torch"] == torch.__version__
    assert provenance["torchvision"] == torchvision.__version__
    assert provenance["cuda"] == torch.version.cuda  # None on a CPU-only build
    assert provenance["device"] == ("cuda:0" if torch.cuda.is_available() else "cpu")
    assert provenance["device_name"]
    # the resolved config sits beside it
    assert json.loads((config.save_dir / "config.json").read_text())["trainer"]["epochs"] == 1

    if (REPO / ".git").exists():
        assert provenance["git"]["commit"] == git(REPO, "rev-parse", "HEAD").strip()
        dirty = bool(git(REPO, "status", "--porcelain", "--untracked-files=no").strip())
        assert provenance["git"]["dirty"] is dirty
    else:
        assert provenance["git"] is None


def test_git_state_outside_a_checkout_is_none(tmp_path):
    assert git_state(tmp_path) is None


@pytest.mark.skipif(subprocess.run(["git", "--version"], capture_output=True).returncode != 0,
                    reason="git is not installed")
def test_git_state_reports_the_commit_and_the_dirty_flag(tmp_path):
    git(tmp_path, "init", "-q")
    (tmp_path / "train.py").write_text("print('v1')\n")
    git(tmp_path, "add", "train.py")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-q", "-m", "v1")
    head = git(tmp_path, "rev-parse", "HEAD").strip()
    assert git_state(tmp_path) == {"commit": head, "dirty": False}
    (tmp_path / "notes.txt").write_text("untracked files do not make a checkout dirty\n")
    assert git_state(tmp_path) == {"commit": head, "dirty": False}
    (tmp_path / "train.py").write_text("print('v2')\n")
    assert git_state(tmp_path) == {"commit": head, "dirty": True}


def test_git_is_asked_once_per_start_for_provenance_and_the_trackers(small_config, monkeypatch):
    """provenance.json and the trackers' git_commit tag come from the one git_state() of the start."""
    pytest.importorskip("mlflow")
    calls = []
    monkeypatch.setattr(provenance_module, "git_state",
                        lambda root=None: calls.append(root) or {"commit": "c0ffee" * 6 + "ab", "dirty": False})
    config = train_in_process("-c", str(small_config), "-o", "trainer.epochs=1", "-o", "trainer.len_epoch=1",
                              "-o", "trainer.trackers=[\"mlflow\"]")
    assert len(calls) == 1
    assert json.loads((config.save_dir / "provenance.json").read_text())["git"]["commit"] == "c0ffee" * 6 + "ab"
    _, (run,) = mlflow_runs(config.save_dir.parents[2])
    assert run.data.tags["git_commit"] == "c0ffee" * 6 + "ab"
