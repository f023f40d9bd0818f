"""Workers restarted together revive a dead trial once, and train its retry once (issue 25, case 9).

WORKERS processes, released by a barrier, each find the same dead trial (by its worker record on this machine,
or by its stale heartbeat) and try to revive it: the study must then hold exactly one WAITING retry of it. Then
WORKERS processes ask for a trial at once: exactly one of them gets that retry. On a SQLite file and on
PostgreSQL; with Optuna's own check-then-write, SQLite let 3 of 6 queue a retry, and up to 6 of 6 take one.
"""
import multiprocessing
import socket
import subprocess
import sys
import time

import pytest
from optuna.trial import TrialState

from search.claim import fail_if_running
from search.recovery import fail_stale_trials, retry_after_kill, revive_dead_trials
from search.storage import open_storage, open_study, storage_url
from search.trial_loop import ask
from tests.helpers.skips import needs_postgresql

WORKERS = 6
ROUNDS = 4
GRACE = 1  # seconds: a heartbeat older than this is stale


def _study(url):
    return open_study(open_storage(url, 1, GRACE, retry_after_kill()), "s", "minimize", None, None)


def _revive(study, runs_dir, worker):
    """Half the workers revive by this machine's worker records, the other half by the heartbeat."""
    if worker % 2:
        return len(fail_stale_trials(study, runs_dir))
    found = revive_dead_trials(study, runs_dir, retry_after_kill())
    return len(found)


def _take(study, runs_dir, worker):
    return ask(study).number


def _at_once(act, url, runs_dir, worker, barrier, results):
    try:
        study = _study(url)
        barrier.wait(timeout=60)
        results.put(act(study, runs_dir, worker))
    except BaseException as err:  # noqa: B036 - every failure is a result here
        results.put(repr(err))


def at_once(act, url, runs_dir):
    """`act(study, runs_dir, worker)` in WORKERS processes released together; their results."""
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(WORKERS), context.Queue()
    processes = [context.Process(target=_at_once, args=(act, url, runs_dir, worker, barrier, results))
                 for worker in range(WORKERS)]
    for process in processes:
        process.start()
    answers = [results.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(timeout=30)
    return answers


def a_dead_trial(study):
    """A RUNNING trial whose worker (a process of this machine) is gone, its heartbeat older than GRACE."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    trial = ask(study)
    trial.set_user_attr("run_id", f"s-trial{trial.number}")
    trial.set_user_attr("worker", {"host": socket.gethostname(), "pid": gone.pid, "trial": trial.number})
    study._storage.record_heartbeat(trial._trial_id)
    time.sleep(GRACE + 1)
    return trial.number


def revive_and_take_at_once(url, runs_dir):
    """ROUNDS times: a dead trial revived by WORKERS processes at once, then asked for by WORKERS at once.
    Returns per round (how many said they revived it, its WAITING retries, how many took a retry, failures)."""
    study = _study(url)
    rounds = []
    for _ in range(ROUNDS):
        number = a_dead_trial(study)
        revived = at_once(_revive, url, runs_dir)
        retries = [t.number for t in study.get_trials(states=(TrialState.WAITING,))
                   if t.system_attrs.get("failed_trial") == number]
        taken = at_once(_take, url, runs_dir)
        failures = [a for a in revived + taken if not isinstance(a, int)]
        rounds.append((sum(a for a in revived if isinstance(a, int)), len(retries),
                       sum(a in retries for a in taken), failures))
        for trial in study.get_trials(states=(TrialState.RUNNING,)):  # out of the next round's way
            study.tell(trial.number, 1.0)
    return rounds


@pytest.mark.slow
def test_one_retry_of_a_dead_trial_on_sqlite(tmp_path):
    assert revive_and_take_at_once(storage_url(None, tmp_path, "s"), tmp_path) == [(1, 1, 1, [])] * ROUNDS


@pytest.mark.slow
@needs_postgresql
def test_one_retry_of_a_dead_trial_on_postgresql(tmp_path, postgres):
    assert revive_and_take_at_once(storage_url(postgres(), None, "s"), tmp_path) == [(1, 1, 1, [])] * ROUNDS


def test_only_a_running_trial_is_failed(tmp_path):
    """The claim is conditional: a trial already failed, or complete, is not failed (nor queued) again."""
    study = open_study(open_storage(storage_url(None, tmp_path, "s"), None, GRACE, None), "s", "minimize", None,
                       None)
    running, done = ask(study), ask(study)
    study.tell(done, 0.5)
    assert [fail_if_running(study._storage, t._trial_id) for t in (running, running, done)] == [True, False, False]
    assert [t.state for t in study.get_trials()] == [TrialState.FAIL, TrialState.COMPLETE]
