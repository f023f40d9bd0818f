"""Faults for a search while it runs (tests/test_tune_faults.py): its torchrun workers, the events a fault waits
for (a run's save in the middle of an epoch, a trial told COMPLETE) and the faults themselves (SIGKILL of a whole
worker or of one rank, SIGTERM just after a trial completes, the database blinking). Every fault is triggered by
what the search does, never by a sleep, and drawn from a seeded random.Random so that a failure reproduces."""
import contextlib
import os
import re
import signal
import time

import torch
from optuna.trial import TrialState

from runs import lock as run_lock
from runs.files import LATEST
from tests.helpers.paths import REPO
from tests.helpers.torchrun import finish, start, torchrun, workers_of
from tests.helpers.tune_setup import load_study

WORKER = ("--standalone", "--nproc_per_node=2", "--max-restarts=1")  # a worker with ranks to kill, restarted once
KILLS = ("kill worker", "kill rank")
STOP = "stop after complete"


def fault_plan(rng, blinks):
    """The faults of one test in a random order: (kind, saves to let pass before it, rank to kill)."""
    kinds = [*KILLS, STOP, *blinks]
    rng.shuffle(kinds)
    return [(kind, rng.randint(0, 3), rng.randint(0, 1)) for kind in kinds]


class Workers:
    """One round of the search's workers: `count` torchrun agents of `tune.py -c config`, each logging to a file."""

    def __init__(self, config_path, folder, round_number, count=2):
        self.logs = [folder / f"round{round_number}-worker{k}.log" for k in range(count)]
        self.agents = [start(torchrun(*WORKER, "tune.py", "-c", config_path), REPO, log) for log in self.logs]

    def live(self):
        return [agent for agent in self.agents if agent.poll() is None]

    def agent_of(self, pid):
        """The live agent one of whose ranks is `pid`, or None."""
        return next((agent for agent in self.live() if pid in dict(workers_of(agent))), None)

    def wait(self, deadline):
        return finish(self.agents, deadline)

    def project_tracebacks(self):
        """Logs with a traceback through this project's code (torchrun prints its own for a killed rank or a
        SIGTERM: those are not ours)."""
        return [log.name for log in self.logs if f'File "{REPO}/' in log.read_text()]

    def tails(self, chars=2500):
        return "\n".join(f"--- {log.name}\n{log.read_text()[-chars:]}" for log in self.logs if log.exists())


def kill_whole_worker(agent):
    """SIGKILL the agent first (it must not restart its ranks), then its ranks: torchrun puts each rank in a session
    of its own, so the agent's process group alone would leave them training."""
    ranks = [pid for pid, _ in workers_of(agent)]
    for pid in [agent.pid, *ranks]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def kill_rank(agent, rank):
    """SIGKILL one rank of `agent`; False when it has no such rank now (between restarts)."""
    victims = [pid for pid, r in workers_of(agent) if r == rank]
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    return bool(victims)


def holder_pid(run):
    """The pid of the process holding `run`'s lock ("host H pid P since T"), or None."""
    found = re.search(r"pid (\d+)", run_lock.holder_seen(run) or "")
    return int(found.group(1)) if found else None


def mid_epoch_save(runs_dir, seen):
    """A run whose model_latest.pth was saved inside an epoch since `seen` ({path: mtime} of the saves already
    seen, updated), or None."""
    for latest in runs_dir.glob(f"*/{LATEST}"):
        try:
            stamp = latest.stat().st_mtime_ns
            if seen.get(latest) == stamp:
                continue
            seen[latest] = stamp
            if torch.load(latest, weights_only=True)["resume_batch"] > 0:
                return latest.parent
        except (OSError, RuntimeError, EOFError):
            continue  # replaced while read: the next look sees the new file
    return None


def completed_trials(config):
    """Numbers of the study's COMPLETE trials; None while the database cannot be read (a blink)."""
    try:
        return {t.number: t for t in load_study(config).get_trials(deepcopy=False, states=(TrialState.COMPLETE,))}
    except Exception:  # noqa: BLE001 - an outage the test made, or a study not created yet
        return None


def seen_saves(runs_dir):
    return {latest: latest.stat().st_mtime_ns for latest in runs_dir.glob(f"*/{LATEST}")}


def wait_for_save(workers, runs_dir, skip, deadline):
    """(run, agent training it) at the `skip`+1-th mid-epoch save from now; None when no worker is left."""
    seen = seen_saves(runs_dir)
    while time.monotonic() < deadline and workers.live():
        run = mid_epoch_save(runs_dir, seen)
        agent = run and workers.agent_of(holder_pid(run))
        if agent is not None:
            if skip == 0:
                return run, agent
            skip -= 1
        time.sleep(0.02)
    return None


def wait_for_complete(workers, config, deadline):
    """(trial, agent that trained it) once a trial is newly COMPLETE and its worker still runs; None otherwise."""
    before = completed_trials(config) or {}
    while time.monotonic() < deadline and workers.live():
        now = completed_trials(config) or {}
        for number in now.keys() - before.keys():
            agent = workers.agent_of(now[number].user_attrs["worker"]["pid"])
            if agent is not None:
                return now[number], agent
        before.update(now)
        time.sleep(0.05)
    return None


def inject(plan, workers, runs_dir, config, blink, deadline):
    """Apply the faults of `plan` in order, each at its event; returns (what was done, the faults left once no
    worker of this round is alive)."""
    done = []
    while plan:
        kind, skip, rank = plan[0]
        if kind == STOP:
            event = wait_for_complete(workers, config, deadline)
        else:
            event = wait_for_save(workers, runs_dir, skip, deadline)
        if event is None:
            break
        what, agent = event
        if kind == "kill worker":
            kill_whole_worker(agent)
        elif kind == "kill rank" and not kill_rank(agent, rank):
            continue
        elif kind == STOP:
            agent.send_signal(signal.SIGTERM)  # as a scheduler stops a job: torchrun passes it to the ranks
        elif kind not in KILLS:
            blink(kind)
        label = f"trial {what.number} COMPLETE" if kind == STOP else f"a mid-epoch save of {what.name}"
        done.append(f"{kind}{f' {rank}' if kind == 'kill rank' else ''} at {label}")
        plan = plan[1:]
    return done, plan
