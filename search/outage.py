"""Waiting out a blink of the study's database (tune.py): a PostgreSQL restart, a failover, a few seconds of
network loss, a SQLite file locked for longer than its busy timeout.

Every call a worker makes to the study (ask, report, tell, attributes) is retried with backoff while the database
cannot be reached, for up to tune.storage_wait seconds; then the worker stops in one line (exit 75, "try again
later"), its trial left RUNNING with its run's checkpoints for the next start to continue. One line says that the
database is gone, one that it is back. Errors of the data (a duplicate key, a value too long, a read-only file)
are not outages: they are raised at once. The heartbeat makes one attempt per beat: its next beat is its retry.
"""
import random
import threading
import time

import optuna
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError

from utils.errors import UserError, print_line
from utils.redact import redact

STORAGE_WAIT = 600  # seconds: a restart or a managed database's failover fits, a week-long search hardly notices
FIRST_PAUSE, LONGEST_PAUSE = 0.5, 10.0  # backoff between retries, doubling

# what Optuna's RDBStorage is called through: _CachedStorage (study._storage) calls the private ones
RETRIED = ("create_new_study", "delete_study", "set_study_user_attr", "set_study_system_attr",
           "get_study_id_from_name", "get_study_name_from_id", "get_study_directions", "get_study_user_attrs",
           "get_study_system_attrs", "get_all_studies", "create_new_trial", "_create_new_trial", "set_trial_param",
           "_set_trial_param", "get_trial_id_from_study_id_trial_number", "get_trial_number_from_id",
           "get_best_trial", "_get_best_trial_id", "set_trial_intermediate_value", "set_trial_user_attr",
           "set_trial_system_attr", "get_trial", "get_all_trials", "_get_trials", "get_n_trials",
           "_get_stale_trial_ids")


class StorageOutage(UserError):
    """The study's database did not answer for tune.storage_wait seconds."""

    exit_code = 75  # EX_TEMPFAIL: nothing is wrong with the command; run it again later


def is_outage(err, sqlite):
    """Whether `err` (or what caused it) says the database cannot be reached now, rather than that a statement
    or its data is wrong. SQLite's only such error is a lock held past the busy timeout."""
    while err is not None:
        if isinstance(err, DBAPIError):
            if sqlite:
                return "locked" in str(err.orig) or "busy" in str(err.orig)
            return err.connection_invalidated or isinstance(err, (OperationalError, InterfaceError))
        if isinstance(err, DisconnectionError):
            return True
        err = err.__cause__ or err.__context__
    return False


class PatientStorage(optuna.storages.RDBStorage):
    """Optuna's RDBStorage whose calls wait out an outage of up to `outage_wait` seconds."""

    def __init__(self, url, outage_wait=STORAGE_WAIT, **kwargs):
        self.outage_wait, self.sqlite = outage_wait, url.startswith("sqlite")
        self._calling = threading.local()  # a retried call that calls another is retried once, as a whole
        self._outage = OutageLines(redact(url))
        super().__init__(url, **kwargs)

    def set_trial_state_values(self, trial_id, state, values=None):
        try:
            return self._patiently(super().set_trial_state_values, trial_id, state, values)
        except optuna.exceptions.UpdateFinishedTrialError:
            # an attempt cut off after its commit leaves the trial told: its retry finds it finished
            retried = getattr(self._calling, "retried", False)
            if retried and state.is_finished() and self.get_trial(trial_id).state == state:
                return True
            raise

    def record_heartbeat(self, trial_id):
        """One attempt: a beat lost to an outage is said once (the outage's line), and the next beat retries."""
        try:
            super().record_heartbeat(trial_id)
        except Exception as err:
            if not is_outage(err, self.sqlite):
                raise
            self.scoped_session.remove()
            self._outage.began(err, self.outage_wait)
            return
        self._outage.ended()

    def _patiently(self, call, *args, **kwargs):
        if getattr(self._calling, "active", False):
            return call(*args, **kwargs)
        self._calling.active, self._calling.retried = True, False
        try:
            return self._retry(call, args, kwargs)
        finally:
            self._calling.active = False

    def _retry(self, call, args, kwargs):
        deadline, pause = time.monotonic() + self.outage_wait, FIRST_PAUSE
        while True:
            try:
                result = call(*args, **kwargs)
            except Exception as err:
                if not is_outage(err, self.sqlite):
                    raise
                self.scoped_session.remove()  # its connection is dead: the next attempt takes a new one
                self._outage.began(err, self.outage_wait)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise StorageOutage(self._outage.given_up(self.outage_wait)) from None
                time.sleep(min(left, pause * random.uniform(0.8, 1.2)))  # workers do not all knock at once
                pause, self._calling.retried = min(2 * pause, LONGEST_PAUSE), True
                continue
            self._outage.ended()
            return result


def _patient(name):
    def call(self, *args, **kwargs):
        return self._patiently(getattr(super(PatientStorage, self), name), *args, **kwargs)
    call.__name__ = name
    return call


for _name in RETRIED:
    setattr(PatientStorage, _name, _patient(_name))


class OutageLines:
    """One line when the database stops answering, one when it answers again, whichever thread saw it."""

    def __init__(self, shown_url):
        self.shown_url, self.since, self.lock = shown_url, None, threading.Lock()

    def began(self, err, wait):
        with self.lock:
            if self.since is not None:
                return
            self.since = time.monotonic()
        print_line(f"warning: the study storage {self.shown_url} does not answer ({first_line(err)}); "
                   f"training goes on and its calls are retried for up to {wait} s (tune.storage_wait)")

    def ended(self):
        with self.lock:
            if self.since is None:
                return
            gone, self.since = time.monotonic() - self.since, None
        print_line(f"the study storage {self.shown_url} answers again after {gone:.1f} s")

    def given_up(self, wait):
        return (f"the study storage {self.shown_url} did not answer for {wait} s (tune.storage_wait); this worker "
                "stops and its trial stays continuable: run the same command again once the database is back")


def first_line(err):
    """The driver's own words (Optuna wraps them in a message about "invalid data in the commit")."""
    cause = err
    while cause is not None and not isinstance(cause, DBAPIError):
        cause = cause.__cause__ or cause.__context__
    text = str(cause.orig if cause is not None else err).strip()
    return redact(text.splitlines()[0]) if text else type(err).__name__  # a driver may quote the URL

