"""The heartbeat of a search's trials (tune.py): this worker's beats while it trains a trial, and the
judgement of other workers' trials whose beats stopped.

A trial whose beats stopped for grace_period seconds is stale only when no live job holds its run's
lock: a worker that lost its beats to a database outage still trains, and a retry of its trial would
find the run busy while the trial itself could no longer be told (the issue this guards: two workers
failing each other's live trials after a 3-second outage).
"""
import copy
import threading

import optuna
from optuna.trial import TrialState

from runs import lock as run_lock
from utils.errors import print_line


def fail_stale_trials(study, runs_dir):
    """Optuna's fail_stale_trials, sparing the trials whose run a live job still holds: each stale trial is
    failed and handed to the storage's stale-trial callback (a retry)."""
    storage = study._storage
    if storage.get_heartbeat_interval() is None:
        return
    on_stale = storage.get_heartbeat_stale_trial_callback()
    for trial_id in storage._get_stale_trial_ids(study._study_id):
        run_id = storage.get_trial(trial_id).user_attrs.get("run_id")
        if run_id and run_lock.holder_seen(runs_dir / run_id) is not None:
            continue  # its worker lives and trains it; only its beats were lost
        try:
            if not storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another worker got there first
        if on_stale is not None:
            on_stale(study, copy.deepcopy(storage.get_trial(trial_id)))


class Heartbeat:
    """Records that this worker is alive, every heartbeat_interval seconds while a trial trains (Optuna's
    heartbeat: a trial whose beats stop for grace_period seconds is failed and queued again by others).
    A beat lost to a database outage is tried again at the next beat (search/outage.py says so, once)."""

    def __init__(self, storage, trial):
        self.storage, self.trial_id, self.number = storage, trial._trial_id, trial.number
        self.interval = storage.get_heartbeat_interval() if hasattr(storage, "get_heartbeat_interval") else None
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True, name=f"heartbeat of trial {trial.number}")

    def __enter__(self):
        if self.interval is not None:
            self.storage.record_heartbeat(self.trial_id)
            self.thread.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        if self.thread.is_alive():
            self.thread.join()

    def _beat(self):
        warned = False
        while not self.done.wait(self.interval):
            try:
                self.storage.record_heartbeat(self.trial_id)
            except Exception as err:  # noqa: BLE001 - whatever it is, training goes on and the next beat retries
                if not warned:
                    print_line(f"warning: the heartbeat of trial {self.number} was not recorded "
                               f"({type(err).__name__}); trying again every {self.interval} s")
                warned = True
