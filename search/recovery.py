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

MAX_RETRY = 3  # a trial that kills its worker every time (out of memory) is given up after this many kills
KILLS = "kills"  # system attr: how often the workers of this trial's run died (stops are not counted)


def retry_after_kill():
    """The callback for trials found dead (Optuna's heartbeat, revive_dead_trials): a retry, up to MAX_RETRY."""
    def on_dead(study, trial):
        kills = trial.system_attrs.get(KILLS, 0) + 1
        run = trial.user_attrs.get("run_id", "?")
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
    try:
        if not storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
            return False
    except optuna.exceptions.UpdateFinishedTrialError:
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
