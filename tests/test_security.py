"""A checkpoint whose pickle would run code on load is refused (weights_only=True),
by train.py and test.py alike, and the code never runs."""
import os
import subprocess
import sys

import pytest
import torch

from model.model import MnistModel
from runs.checkpoint_file import load_checkpoint
from tests.helpers.configs import shrink_config
from tests.helpers.paths import REPO
from utils.errors import UserError


class CreatesFileWhenUnpickled:
    """Unpickling this calls open(marker, "w"): code chosen by whoever wrote the file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


@pytest.fixture
def booby_trapped_checkpoint(tmp_path, synthetic_data_dir):
    """A checkpoint of the right shape (real LeNet weights) with the trap inside its config."""
    marker = tmp_path / "code_ran"
    config = shrink_config(tmp_path, synthetic_data_dir)
    config["name"] = CreatesFileWhenUnpickled(marker)
    run = tmp_path / "saved" / "models" / "Mnist_LeNet" / "0101_000000"
    run.mkdir(parents=True)
    path = run / "model_best.pth"
    torch.save({"arch": "MnistModel", "epoch": 1, "resume_batch": 0, "state_dict": MnistModel().state_dict(),
                "config": config}, path)
    return path, marker


@pytest.mark.slow
def test_entry_points_refuse_it(booby_trapped_checkpoint):
    path, marker = booby_trapped_checkpoint
    before = sorted(path.parent.parent.parent.parent.rglob("*"))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # both entry points at once: each spends ~3 s importing
    processes = [subprocess.Popen([sys.executable, script, "-r", str(path)], cwd=REPO, env=env, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE) for script in ("train.py", "test.py")]
    for process in processes:
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == 2, stderr
        assert "Traceback" not in stderr
        (line,) = stderr.splitlines()
        assert line.startswith(f"error: checkpoint {path} holds objects that the safe loader (weights_only=True) "
                               "refuses")
        assert "it would load the global io.open" in line
        assert line.endswith("it was not loaded: use only checkpoints written by this template")
        assert "weights_only=False" not in line  # torch's own advice would be the wrong one here
    assert not marker.exists(), "the checkpoint's code ran"
    assert sorted(path.parent.parent.parent.parent.rglob("*")) == before, "nothing may be written"


def test_loader_refuses_it_and_the_trap_is_real(booby_trapped_checkpoint):
    path, marker = booby_trapped_checkpoint
    with pytest.raises(UserError, match="refuses"):
        load_checkpoint(path)
    assert not marker.exists()
    # the control: an unsafe load does run the code, so the refusal above is what protected us
    torch.load(path, weights_only=False)
    assert marker.exists()
