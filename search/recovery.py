"""Trials whose worker died or stopped (tune.py): each is failed and queued again with the same
parameters, and the retry continues the same run, from that run's newest checkpoint.

Optuna's heartbeat finds a dead worker's trial after its grace period, on any machine. A worker
starting on the dead one's machine need not wait: a RUNNING trial whose recorded worker process
is gone and whose run folder no live job holds is dead now.

Only kills count toward MAX_RETRY: a stop (SIGTERM, Ctrl-C) is the user's, not the trial's fault, and
only a RUNNING trial is ever queued again (a COMPLETE, PRUNED or FAIL one is never evaluated twice).
"""
import os
import socket

import optuna
from optuna.trial import TrialState

from runs import lock as run_lock
from search.claim import fail_if_running
from search.worker_exit import left_by_outage

MAX_RETRY = 3  # a trial that kills its worker every time (out of memory) is given up after this many kills
KILLS = "kills"  # system attr: how often the workers of this trial's run died (stops are not counted)


def retry_after_kill(runs_dir=None):
    """The callback for trials found dead (Optuna's heartbeat, revive_dead_trials): a retry, up to MAX_RETRY kills.
    A worker that stopped on a storage outage (its note in the trial's run folder, under `runs_dir`) was no kill."""
    def on_dead(study, trial):
        run = trial.user_attrs.get("run_id", "?")
        if left_by_outage(runs_dir, trial):
            _queue_again(study, trial, trial.system_attrs.get(KILLS, 0))
            print(f"trial {trial.number}: its worker stopped on a storage outage; queued again to continue its run "
                  f"({run}, no kill counted)", flush=True)
            return True
        kills = trial.system_attrs.get(KILLS, 0) + 1
        if kills > MAX_RETRY:
            print(f"trial {trial.number} ({run}): its worker is gone again, killed {kills} times: given up (at most "
                  f"{MAX_RETRY} retries after kills; its run keeps its checkpoints)", flush=True)
            return False
        _queue_again(study, trial, kills)
        print(f"trial {trial.number}: its worker is gone; queued again to continue its run ({run}, kill "
              f"{kills} of at most {MAX_RETRY})", flush=True)
        return True
    return on_dead


def requeue_if_running(study, trial_id):
    """A stopped trial (SIGTERM, Ctrl-C): failed and queued again, no limit; True when it was still RUNNING.
    A trial already told (COMPLETE, PRUNED, FAIL) is left as it is."""
    storage = study._storage
    if not fail_if_running(storage, trial_id):
        return False
    trial = storage.get_trial(trial_id)
    _queue_again(study, trial, trial.system_attrs.get(KILLS, 0))
    return True


def _queue_again(study, trial, kills):
    """A WAITING copy of `trial`: same parameters and reports, and Optuna's retry records (retried_trial_number)."""
    attrs = dict(trial.system_attrs)
    attrs["failed_trial"] = attrs.get("failed_trial", trial.number)  # whose run the retry continues
    attrs["retry_history"] = [*attrs.get("retry_history", []), trial.number]
    attrs[KILLS] = kills
    study.add_trial(optuna.trial.create_trial(
        state=TrialState.WAITING, params=trial.params, distributions=trial.distributions,
        user_attrs=trial.user_attrs, system_attrs=attrs, intermediate_values=trial.intermediate_values))


def run_number(trial):
    """The number of the trial whose run this one trains: a retry continues its original's run."""
    return trial.storage.get_trial_system_attrs(trial._trial_id).get("failed_trial", trial.number)


def this_worker():
    return {"host": socket.gethostname(), "pid": os.getpid()}


def revive_dead_trials(study, runs_dir, on_dead):
    """Fail the RUNNING trials of dead workers on this machine and hand each to `on_dead`; return their numbers."""
    dead = [t._trial_id for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if _is_dead(t, runs_dir)]
    return _revive(study, dead, on_dead)


def fail_stale_trials(study, runs_dir):
    """Optuna's heartbeat check, each stale trial revived once over all workers: fail the RUNNING trials whose
    beats stopped `grace_period` ago and hand each to the storage's stale-trial callback; return their numbers.
    A trial whose run a live job still holds is not stale: its worker trains on, it only lost its beats to a
    database outage (two workers failed each other's live trials after a 3-second outage)."""
    storage = study._storage
    if storage.get_heartbeat_interval() is None:
        return []
    stale = [trial_id for trial_id in storage._get_stale_trial_ids(study._study_id)
             if not _held(runs_dir, storage.get_trial(trial_id).user_attrs.get("run_id"))]
    return _revive(study, stale, storage.get_heartbeat_stale_trial_callback())


def _held(runs_dir, run_id):
    return bool(run_id) and run_lock.holder_seen(runs_dir / run_id) is not None


def _revive(study, trial_ids, on_dead):
    """Of workers reviving the same trial at once, only the one whose claim fails it hands it to `on_dead`."""
    revived = []
    for trial_id in trial_ids:
        if fail_if_running(study._storage, trial_id):
            trial = study._storage.get_trial(trial_id)
            if on_dead is not None:
                on_dead(study, trial)
            revived.append(trial.number)
    return revived


def _is_dead(trial, runs_dir):
    worker = trial.user_attrs.get("worker")
    # the worker record is set by the trial itself: a retry still carrying its original's record is not judged
    if not worker or worker.get("trial") != trial.number or worker.get("host") != socket.gethostname():
        return False  # another machine's trial: Optuna's heartbeat judges it
    if _alive(worker["pid"]):
        return False
    return run_lock.holder(runs_dir / trial.user_attrs.get("run_id", "")) is None


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
