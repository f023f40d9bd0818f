"""A trial another worker failed and queued again while this worker still trained it (tune.py).

A live worker's trial is never stale while its run's lock is seen held (search/recovery.py), but the lock is not
seen from another machine when run folders are not on a shared disk, nor are beats during an outage longer than
grace_period. Optuna then refuses this worker's report or tell (UpdateFinishedTrialError: the trial is FAIL).
That is no error of the trial: its retry continues the same run and records the result; this worker leaves the
trial to it and goes on with the next one.
"""
import contextlib

from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState


class RevivedElsewhere(Exception):  # noqa: N818 - an event, like optuna.TrialPruned, not an error
    """The trial this worker trains was failed by another worker; every rank leaves it alike."""


@contextlib.contextmanager
def unless_revived(trial):
    """Around a write to `trial` (report, attribute, tell): RevivedElsewhere when the storage refuses it because the
    trial is no longer RUNNING. Other refusals are raised as they are."""
    try:
        yield
    except (UpdateFinishedTrialError, ValueError):  # study.tell checks the state first: "Cannot tell a FAIL trial"
        if trial.study._storage.get_trial(trial._trial_id).state == TrialState.RUNNING:
            raise
        raise RevivedElsewhere(trial.number) from None


def revived_line(trial):
    """What this worker says once it leaves a trial to its retry."""
    return (f"warning: trial {trial.number} ({trial.user_attrs.get('run_id', '?')}) was revived by another worker "
            "while this one trained it (its run or heartbeat was not seen there); its retry continues the same run "
            "and records the result; this worker goes on with the next trial")
