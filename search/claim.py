"""A trial's state changed by one conditional statement in the study's database (tune.py), so that of many
workers changing it at once exactly one wins: the one that revives a dead trial, or queues a stopped one.

Optuna's RDBStorage.set_trial_state_values reads the trial (SELECT ... FOR UPDATE), checks its state in Python,
then writes it. PostgreSQL holds the row lock in between; SQLite ignores FOR UPDATE and its driver runs the
SELECT outside any write transaction, so two processes both read RUNNING, both write FAIL, and both think they
failed it: two workers restarted together each queued a retry of one dead trial. An UPDATE ... WHERE state =
RUNNING is judged by the database itself, under its write lock (SQLite) or the row's lock (PostgreSQL): the
row count it reports names the single winner.
"""
from datetime import UTC, datetime

import sqlalchemy
from optuna.storages._rdb.models import TrialModel
from optuna.trial import TrialState


def fail_if_running(storage, trial_id):
    """Fail the trial when it is RUNNING; True for the one caller that did (any other finds it failed)."""
    return _move(storage, trial_id, TrialState.RUNNING, TrialState.FAIL)


def start_if_waiting(storage, trial_id):
    """Start the trial when it is WAITING (queued); True for the one caller that did. Optuna's own pop of its
    queue (study.ask) checks then writes too: on SQLite up to every worker asking at once trained one retry."""
    return _move(storage, trial_id, TrialState.WAITING, TrialState.RUNNING)


def _move(storage, trial_id, was, becomes):
    table = TrialModel.__table__
    now = datetime.now(UTC).replace(tzinfo=None)  # stored as naive UTC, as Optuna stores it
    change = {"state": becomes, **({"datetime_complete": now} if becomes.is_finished() else {}),
              **({"datetime_start": now} if becomes == TrialState.RUNNING else {})}
    statement = sqlalchemy.update(table).where(table.c.trial_id == trial_id, table.c.state == was)
    rdb = _rdb(storage)

    def move():
        with rdb.engine.begin() as connection:
            return connection.execute(statement.values(**change)).rowcount == 1
    patiently = getattr(rdb, "_patiently", None)  # search/outage.py: waits out a blink of the database
    return patiently(move) if patiently else move()


def _rdb(storage):
    """The RDBStorage under a study's storage (a study wraps it in Optuna's _CachedStorage)."""
    return getattr(storage, "_backend", storage)
