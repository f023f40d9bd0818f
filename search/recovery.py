"""Trials whose worker died or stopped (tune.py): each is failed and queued again with the same
parameters, and the retry continues the same run, from that run's newest checkpoint.

Optuna's heartbeat finds a dead worker's trial after its grace period, on any machine. A worker
starting on the dead one's machine need not wait: a RUNNING trial whose recorded worker process
is gone and whose run folder no live job holds is dead now.
"""
import os
import socket

import optuna
from optuna.trial import TrialState

from runs import lock as run_lock
from search.storage import quiet_experimental

MAX_RETRY = 3  # a trial that kills its worker every time (out of memory) is given up after this many


def retry_after_kill():
    """The callback for trials found dead: at most MAX_RETRY retries, reports kept for the pruner."""
    with quiet_experimental():
        return optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY, inherit_intermediate_values=True)


def requeue(study, trial_id):
    """Queue a stopped (SIGTERM, Ctrl-C) trial again; a stop is no failure, so there is no limit."""
    with quiet_experimental():
        again = optuna.storages.RetryHeartbeatStaleTrialCallback(inherit_intermediate_values=True)
    again(study, study._storage.get_trial(trial_id))


def run_number(trial):
    """The number of the trial whose run this one trains: a retry continues its original's run."""
    return trial.storage.get_trial_system_attrs(trial._trial_id).get("failed_trial", trial.number)


def this_worker():
    return {"host": socket.gethostname(), "pid": os.getpid()}


def revive_dead_trials(study, runs_dir, on_dead):
    """Fail the RUNNING trials of dead workers on this machine and hand each to `on_dead`; return them."""
    storage, revived = study._storage, []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not _is_dead(trial, runs_dir):
            continue
        try:
            if not storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another worker got there first
        on_dead(study, storage.get_trial(trial._trial_id))
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
