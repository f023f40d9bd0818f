"""Where a study lives (tune.py): a SQLite file under save_dir by default, or a database server
(postgresql://...) that workers on many machines share.

Workers that start at the same instant race to create the schema and the study: one wins, the
others get "table already exists", a duplicate key or a locked database. Those errors are retried
after a short random pause, by which time the winner's tables and study are there to load.
"""
import contextlib
import random
import time
import warnings
from pathlib import Path

import optuna
import sqlalchemy
from sqlalchemy.exc import ArgumentError, DBAPIError

from search.outage import STORAGE_WAIT, PatientStorage, first_line
from utils.errors import UserError
from utils.redact import redact

RACE_ERRORS = (DBAPIError, optuna.exceptions.StorageInternalError, optuna.exceptions.DuplicatedStudyError)
ATTEMPTS = 40  # ~10 s of retries at most: far longer than any creation race lasts


def storage_url(given, save_dir, study):
    """The SQLAlchemy URL of the study's storage: `given`, or <save_dir>/tune/<study>.db."""
    if given is None:
        return f"sqlite:///{Path(save_dir) / 'tune' / f'{study}.db'}"
    _refuse_in_memory(given)
    for plain in ("postgresql://", "postgres://"):  # SQLAlchemy's default driver for these is psycopg2
        if given.startswith(plain):
            return "postgresql+psycopg://" + given[len(plain):]
    return given


def _refuse_in_memory(url):
    """sqlite:/// (no path), sqlite:// and sqlite:///:memory: are databases in this process's memory: each worker
    would have a study of its own, trial folders would collide, and everything would vanish at exit."""
    try:
        parsed = sqlalchemy.engine.make_url(url)
    except ArgumentError:
        return  # not a URL: open_storage says so, in one line
    if parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:"):
        raise UserError(f"storage {url} is an in-memory SQLite database, lost at exit and not shared by workers; "
                        "give a file, e.g. sqlite:///saved/tune/study.db, or leave --storage out for the default")


def open_storage(url, heartbeat_interval, grace_period, on_stale, outage_wait=STORAGE_WAIT):
    """An Optuna RDBStorage on `url` whose calls wait out an outage of up to `outage_wait` seconds
    (search/outage.py); a UserError when the database cannot be reached now."""
    _check_reachable(url)
    sqlite = url.startswith("sqlite")
    # SQLite: wait for a busy database instead of failing; a server: fail fast when it is gone
    connect = {"timeout": 60} if sqlite else {"connect_timeout": 10}
    with quiet_experimental():  # the heartbeat
        return retry_races(lambda: PatientStorage(
            url, outage_wait, engine_kwargs={"connect_args": connect, **({} if sqlite else {"pool_pre_ping": True})},
            heartbeat_interval=heartbeat_interval, grace_period=grace_period,
            heartbeat_stale_trial_callback=on_stale), f"open the study storage {redact(url)}")


def open_study(storage, name, direction, sampler, pruner, metric=None):
    """The study `name` in `storage`, created by whichever worker comes first; its objective is named
    `metric` (optuna-dashboard shows "val_loss", not "Objective 0")."""
    study = retry_races(lambda: optuna.create_study(storage=storage, study_name=name, direction=direction,
                                                    sampler=sampler, pruner=pruner, load_if_exists=True),
                        f"create the study {name}")
    if study.direction.name.lower() != direction:
        raise UserError(f"study {name} in {redact(storage.url)} is to {study.direction.name.lower()} its objective, "
                        f"but trainer.monitor asks to {direction} it; name another study with --study")
    if metric is not None:
        _name_objective(study, metric)
    return study


def _name_objective(study, metric):
    if study.metric_names is not None and study.metric_names != [metric]:
        raise UserError(f"study {study.study_name} optimizes {study.metric_names[0]}, but trainer.monitor watches "
                        f"{metric}; name another study with --study")
    if study.metric_names is None:
        with quiet_experimental():  # set_metric_names is marked experimental, and has been since Optuna 3.2
            retry_races(lambda: study.set_metric_names([metric]), f"name the objective of study {study.study_name}")


@contextlib.contextmanager
def quiet_experimental():
    """Optuna warns at each use of what it marks experimental (the heartbeat and its retry callback since 2.8,
    naming the objective since 3.2): tune.py relies on them, and its users cannot act on the warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def retry_races(make, what):
    for attempt in range(ATTEMPTS):
        try:
            return make()
        except RACE_ERRORS as err:
            if attempt == ATTEMPTS - 1:
                raise UserError(f"could not {what}: {first_line(err)}") from None
            time.sleep(random.uniform(0.05, 0.5))
    return None


def _check_reachable(url):
    if url.startswith("sqlite:///"):
        folder = Path(url.removeprefix("sqlite:///")).parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise UserError(f"cannot create {folder} for the study's SQLite file: {err.strerror}; "
                            "choose another trainer.save_dir or --storage") from None
        return
    try:
        engine = sqlalchemy.create_engine(url, connect_args={"connect_timeout": 10}
                                          if url.startswith("postgresql") else {})
        with engine.connect():
            pass
        engine.dispose()
    except (ArgumentError, ImportError, DBAPIError, ValueError) as err:
        raise UserError(f"cannot reach the study storage {redact(url)}: {first_line(err)}; start the database "
                        "server or fix --storage / tune.storage") from None
