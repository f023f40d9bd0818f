"""Driving torchrun from a test: its command line, a run that waits, agents started in the background, a worker
killed at a chosen line, and a deadline that turns a hang into a failure instead of a stalled CI."""
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers.paths import REPO

STANDALONE = ("--standalone", "--nproc_per_node=2")  # two ranks on this machine
RUN_LIMIT = 120  # seconds; a torchrun run past it has hung
# scripts a launch runs instead of train.py, each leaving evidence the entry points do not write
DDP_RUN = Path(__file__).with_name("ddp_run.py")
EXIT_RUN = Path(__file__).with_name("exit_run.py")


def torchrun(*args):
    """The arguments after `python` that launch torchrun with `args`."""
    return ["-m", "torch.distributed.run", *args]


def run_torchrun(*args, timeout=300, env=None):
    """torchrun `args` from the project folder, to its end: the subprocess.CompletedProcess (output captured)."""
    return subprocess.run([sys.executable, *torchrun(*map(str, args))], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


def start(argv, cwd, log):
    """`python *argv` in the background, in a session of its own, its output going to the file `log`."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, *map(str, argv)], cwd=cwd, env=env, stdout=log.open("w"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def workers_of(agent):
    """(pid, RANK) of the training processes an agent started."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "stat").read_text().rsplit(")", 1)[1].split()[1] == str(agent.pid):
                    pairs = (entry / "environ").read_text().split("\0")
                    env = dict(item.split("=", 1) for item in pairs if "=" in item)
                    found.append((int(entry.name), int(env.get("RANK", -1))))
            except OSError:
                continue
    return found


def kill_worker_at(agents, logs, line, rank, deadline):
    """SIGKILL the worker with RANK `rank` (of any of `agents`) once `line` shows in one of `logs`."""
    _kill_worker_once(agents, lambda: any(line in log.read_text() for log in logs), rank, deadline, repr(line))


def kill_worker_after(agents, path, rank, deadline):
    """SIGKILL the worker with RANK `rank` (of any of `agents`) once the file `path` exists (a checkpoint saved)."""
    _kill_worker_once(agents, Path(path).exists, rank, deadline, str(path))


def _kill_worker_once(agents, ready, rank, deadline, awaited):
    while time.monotonic() < deadline:
        if ready():
            victims = [pid for agent in agents for pid, r in workers_of(agent) if r == rank]
            if victims:
                os.kill(victims[0], signal.SIGKILL)
                return
        time.sleep(0.1)
    pytest.fail(f"{awaited} never appeared")


def kill_job_at(agent, log, line, deadline):
    """SIGKILL a whole job at once, its agent and every worker, once `line` shows in `log` (a node lost, a job
    cancelled by the scheduler); return when all are gone, so the system has released the run's lock."""
    wait_for_line(agent, log, line, deadline)
    workers = [pid for pid, _ in workers_of(agent)]
    for pid in [*workers, agent.pid]:
        os.kill(pid, signal.SIGKILL)
    agent.wait()
    while any(alive(pid) for pid in workers):
        assert time.monotonic() < deadline, "killed workers never went away"
        time.sleep(0.05)


def signal_job_at(agent, log, line, signum, deadline):
    """Send `signum` to a job's torchrun agent once `line` shows in `log`, as a scheduler stopping the job does
    (Slurm's --signal, a pod's termination): the agent passes it on to every worker and waits for them."""
    wait_for_line(agent, log, line, deadline)
    agent.send_signal(signum)


def wait_for_line(process, log, line, deadline):
    """Return once `line` shows in `log`; fail when `process` ends or the deadline passes first."""
    while line not in log.read_text():
        assert process.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
        time.sleep(0.05)


def alive(pid):
    """Running: not gone, not a zombie waiting to be reaped by whoever adopted it (a worker's main thread shows
    as a zombie while its other threads still exit, and its run lock goes only with the last of them)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def finish(processes, deadline):
    """Exit codes, or kill everything and fail when a process runs past the deadline (a hang)."""
    codes = []
    for process in processes:
        try:
            codes.append(process.wait(timeout=max(1, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            for p in processes:  # torchrun starts its workers in sessions of their own: kill them too
                for pid in [pid for pid, _ in workers_of(p)] + [p.pid]:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
            pytest.fail("a run hung past its time limit")
    return codes
