"""SIGKILL at any moment, checkpoint writes included, never leaves a broken checkpoint,
and `-r` on the latest one finishes the run with the weights of a run never killed.

Each kill needs a fresh training process. A fresh `python train.py` spends ~3 s on
imports, so a small wrapper (`python -c`, below) imports once and forks one child per
run; the child runs the real train.py with runpy. The wrapper also slows torch.save
down: on request it writes half a checkpoint and waits, so a kill lands mid-write.
"""
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch

from tests.helpers.configs import shrink_config, write_config
from tests.helpers.paths import REPO
from tests.helpers.runs import run_dirs

EPOCHS = 6
TIMING_COLUMNS = ("epoch_time", "samples_per_sec")

FORK_SERVER = r'''
import io, json, os, runpy, sys, time, traceback
import pandas, torch, torch._dynamo  # imported lazily by metrics.csv and the first optimizer: seconds each
import train  # the slow imports, once per test instead of once per run

import utils.atomic as atomic

real_write_all, stall = atomic.atomic_write_all, {}

def write_that_may_stall(items, binary=True, **kwargs):
    """atomic_write_all; the temp file of the requested checkpoint stops halfway (so it can be killed there)."""
    def maybe_stalling(path, write):
        name = os.path.basename(str(path)).lstrip(".")  # an epoch's files are written as .<name>.pending first
        if not (stall.get("prefix") and name.startswith(stall["prefix"])):
            return path, write
        def half_then_wait(handle):
            buffer = io.BytesIO()
            write(buffer)
            handle.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
            handle.flush()
            print("STALLED " + name, flush=True)
            time.sleep(120)
            write(handle)
        return path, half_then_wait
    return real_write_all([maybe_stalling(path, write) for path, write in items], binary, **kwargs)

atomic.atomic_write_all = write_that_may_stall

def child(command):
    log = os.open(command["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(log, 1)
    os.dup2(log, 2)
    stall["prefix"] = command.get("stall")
    sys.argv = ["train.py", *command["argv"]]
    code = 0
    try:
        runpy.run_path("train.py", run_name="__main__")
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else int(stop.code is not None)
    except BaseException:
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    os._exit(code)

for line in iter(sys.stdin.readline, ""):
    command = json.loads(line)
    pid = os.fork()
    if pid == 0:
        child(command)
    print(pid, flush=True)
    _, status = os.waitpid(pid, 0)
    print(json.dumps({"killed_by": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
                      "exit_code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None}), flush=True)
'''

# When to kill each run: ("after", seconds), ("line", regex in its output) or ("stall", file prefix).
# Runs start from the latest checkpoint when there is one; the order leaves epochs for every kill.
KILLS = [
    ("after", 0.0),                           # at once: before anything is written
    ("line", r"Train Epoch: \d+ \[2/"),       # mid-epoch, before any checkpoint
    ("stall", "model_latest.pth"),            # inside the very first checkpoint write
    ("stall", "checkpoint-epoch"),            # latest's temp written, this one half: neither replaced
    ("line", r"Train Epoch: 2 \[2/"),         # epoch 1 saved, killed in epoch 2
    ("line", r"Resume training from"),        # right after loading the checkpoint
    ("line", r"Train Epoch: \d+ \[7/"),       # mid-epoch after a resume
    ("stall", "model_best.pth"),              # the third file of an epoch
    ("stall", "model_latest.pth"),            # the previous model_latest.pth must survive
    ("line", r"samples_per_sec"),             # epoch ends: metrics.csv and checkpoints being written
    ("after", 0.05),
    ("stall", "checkpoint-epoch"),
    ("stall", "model_latest.pth"),
]
REAL_NAME = re.compile(r"^(model_latest|model_best|checkpoint-epoch\d+)\.pth$|^(config|provenance|run)\.json$"
                       r"|^metrics\.csv$")
# hidden: the run's lock, an epoch's commit journal, its pending files, temp files of a write
TEMP_NAME = re.compile(r"^\.+(.+?)(\.pending)?(\.tmp\d*(\.[\w.-]+)?)?$")  # .tmp<pid>.<host>


class ForkServer:
    """The wrapper process: `run(argv, log, ...)` forks a training child and returns its pid."""

    def __init__(self, tmp_path):
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
        self.errors = (tmp_path / "fork_server.err").open("w")
        self.process = subprocess.Popen([sys.executable, "-c", FORK_SERVER], cwd=REPO, env=env, text=True,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.errors)

    def start(self, argv, log, stall=None):
        command = {"argv": [str(a) for a in argv], "log": str(log), "stall": stall}
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        assert line.strip().isdigit(), f"fork server failed: {line!r}"
        return int(line)

    def outcome(self):
        """How the last child ended: {'killed_by': signal or None, 'exit_code': code or None}."""
        return json.loads(self.process.stdout.readline())

    def close(self):
        self.process.kill()
        self.process.wait()
        self.errors.close()


def wait_for(pid, log, trigger, deadline):
    """Return once `trigger` happened in the child's output (or its delay passed)."""
    kind, what = trigger
    if kind == "after":
        time.sleep(what)
        return
    pattern = re.compile(what if kind == "line" else "STALLED " + re.escape(what))
    while time.monotonic() < deadline:
        if log.exists() and pattern.search(log.read_text()):
            return
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.01)
    pytest.fail(f"{trigger} never happened:\n" + (log.read_text() if log.exists() else "(no output)"))


def latest_epoch(save_dir):
    """Epoch of the newest run's model_latest.pth, or None."""
    runs = run_dirs(save_dir)
    latest = runs[-1] / "model_latest.pth" if runs else None
    return torch.load(latest, weights_only=True)["epoch"] if latest and latest.exists() else None


def check_files_intact(save_dir):
    """Every file under a real name is complete; anything else is a hidden temp file."""
    for run in run_dirs(save_dir):
        for path in run.iterdir():
            if path.name.startswith("."):
                temp = TEMP_NAME.match(path.name)
                assert path.name in (".lock", ".commit.json") or temp and REAL_NAME.match(temp.group(1)), \
                    f"unexpected file {path}"
                continue
            assert REAL_NAME.match(path.name), f"unexpected file {path}"
            if path.suffix == ".pth":
                checkpoint = torch.load(path, weights_only=True)
                assert {"state_dict", "epoch", "optimizer"} <= set(checkpoint), path
            elif path.suffix == ".json":
                json.loads(path.read_text())
            else:
                rows = [line.split(",") for line in path.read_text().splitlines()]
                assert rows and all(len(row) == len(rows[0]) for row in rows), path


def train_argv(config_path, save_dir):
    runs = run_dirs(save_dir)
    if runs and (runs[-1] / "model_latest.pth").exists():
        return ["-r", runs[-1] / "model_latest.pth"]
    return ["-c", config_path]


def metric_history(run):
    header, *rows = [line.split(",") for line in (run / "metrics.csv").read_text().splitlines()]
    keep = [i for i, name in enumerate(header) if name not in TIMING_COLUMNS]
    return [[row[i] for i in keep] for row in [header, *rows]]


@pytest.fixture
def fork_server(tmp_path):
    server = ForkServer(tmp_path)
    yield server
    server.close()


@pytest.mark.slow
def test_sigkill_anywhere_then_resume_finishes_exactly(tmp_path, synthetic_data_dir, fork_server):
    deadline = time.monotonic() + 60
    config = shrink_config(tmp_path, synthetic_data_dir, epochs=EPOCHS, log_step=1, verbosity=2)
    config_path = write_config(tmp_path, config)
    reference_config = {**config, "trainer": {**config["trainer"], "save_dir": str(tmp_path / "reference")}}
    fork_server.start(["-c", write_config(tmp_path, reference_config, "reference.json")], tmp_path / "reference.log")
    assert fork_server.outcome()["exit_code"] == 0, (tmp_path / "reference.log").read_text()

    save_dir, previous = tmp_path / "saved", None
    for number, trigger in enumerate(KILLS):
        log = tmp_path / f"kill{number}.log"
        kind, what = trigger
        pid = fork_server.start(train_argv(config_path, save_dir), log, stall=what if kind == "stall" else None)
        wait_for(pid, log, trigger, deadline)
        os.kill(pid, signal.SIGKILL)
        assert fork_server.outcome()["killed_by"] == signal.SIGKILL, f"kill {number} came too late"
        check_files_intact(save_dir)
        reached = latest_epoch(save_dir)
        assert reached is None or reached >= (previous or 0), "a kill must never lose a finished checkpoint"
        previous = reached
    assert previous is not None and previous < EPOCHS

    log = tmp_path / "final.log"
    fork_server.start(train_argv(config_path, save_dir), log)
    assert fork_server.outcome()["exit_code"] == 0, log.read_text()
    check_files_intact(save_dir)
    final_run, (reference_run,) = run_dirs(save_dir)[-1], run_dirs(tmp_path / "reference")
    final = torch.load(final_run / "model_latest.pth", weights_only=True)
    reference = torch.load(reference_run / "model_latest.pth", weights_only=True)
    assert final["epoch"] == EPOCHS
    assert not list(final_run.glob(".*.pth.tmp*")), "half-written temp files of killed runs are cleaned up"
    for key, tensor in reference["state_dict"].items():
        assert torch.equal(final["state_dict"][key], tensor), f"weights differ after the kills: {key}"
    assert metric_history(final_run) == metric_history(reference_run)
