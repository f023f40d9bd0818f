"""The study database may blink (docs/search.md, "Faults"): a PostgreSQL restart or a 3-second outage while
two workers train. Both workers wait it out, finish, and record every trial they trained; neither fails the
other's live trial; no traceback. An outage longer than tune.storage_wait stops a worker in one line."""
import threading
import time

import optuna
import pytest
from optuna.trial import TrialState

from search.claim import fail_if_running
from search.outage import PatientStorage, StorageOutage
from search.recovery import KILLS, fail_stale_trials, retry_after_kill
from search.storage import open_storage, storage_url
from search.worker_exit import record_outage_exit
from tests.helpers.locks import lock_held_elsewhere, sqlite_locked_for
from tests.helpers.skips import needs_postgresql
from tests.helpers.tune_setup import load_study, start_tune, tune_config, write
from tests.synthetic_mnist import write_synthetic_mnist

RUNS = ("saved", "models", "Mnist_LeNet")


def blink_study(tmp_path, storage, **tune):
    """A 2-trial study of 3 epochs with a fast heartbeat (1 s, stale after 2 s); returns (config, its path)."""
    data = write_synthetic_mnist(tmp_path / "data", n_train=2000, n_test=10)
    config = tune_config(tmp_path, data, trainer={"epochs": 3}, trials=2, storage=storage, heartbeat_interval=1,
                         grace_period=2, **tune)
    config["data_loader"]["args"]["batch_size"] = 8  # 225 batches an epoch: the blink lands inside one
    return config, write(tmp_path, config)


def blink_in_epoch_2(tmp_path, workers, trials, blink):
    runs = tmp_path.joinpath(*RUNS)
    deadline = time.monotonic() + 240
    while not all((runs / f"s-trial{k}" / "checkpoint-epoch1.pth").exists() for k in trials):
        assert time.monotonic() < deadline and all(w.poll() is None for w in workers), "no blink: a worker ended"
        time.sleep(0.05)
    blink()


def two_workers_through(tmp_path, storage, blink):
    """Two workers on the study; `blink()` once both trials are in their second epoch. Returns (the study's
    config, [(exit code, stdout, stderr)] per worker)."""
    config, path = blink_study(tmp_path, storage)
    workers = [start_tune(path) for _ in range(2)]
    blink_in_epoch_2(tmp_path, workers, (0, 1), blink)
    outputs = [w.communicate(timeout=300) for w in workers]
    return config, [(w.returncode, *output) for w, output in zip(workers, outputs, strict=True)]


def check_all_recorded(config, results, tmp_path):
    for code, out, err in results:
        assert code == 0 and "Traceback" not in err, out[-2000:] + err[-4000:]
        assert err.count("\n") <= 6, err  # one line per event
    trials = load_study(config).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * len(trials), [(t.number, t.state) for t in trials]
    assert {t.user_attrs["run_id"] for t in trials} == {f"s-trial{t.number}" for t in trials}
    for trial in trials:  # each recorded value is its run's best, the one model_best.pth holds
        assert trial.value is not None and trial.user_attrs["epochs"] == 3
        assert (tmp_path.joinpath(*RUNS) / trial.user_attrs["run_id"] / "model_best.pth").is_file()
    for _, out, _ in results:
        assert "worker is gone" not in out  # no live trial was taken for a dead one's


@pytest.mark.slow
@needs_postgresql
def test_two_workers_wait_out_a_postgresql_restart(tmp_path, postgres):
    """Issue 25, case 3: pg_ctl restart -m fast mid-epoch used to end both workers with exit 1 and tracebacks."""
    config, results = two_workers_through(tmp_path, postgres(), postgres.restart)
    check_all_recorded(config, results, tmp_path)


@pytest.mark.slow
@needs_postgresql
def test_two_workers_wait_out_a_3_second_outage(tmp_path, postgres):
    """Issue 25, case 4: a 3 s outage used to kill the heartbeats, so one worker failed the other's live trial."""
    config, results = two_workers_through(tmp_path, postgres(), lambda: postgres.stop_for(3))
    check_all_recorded(config, results, tmp_path)
    for _, _, err in results:  # each worker met the outage (its heartbeat beats every second)
        assert "does not answer" in err and "answers again after" in err, err


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # a study asked outside Study.optimize, as tune.py does
def test_a_trial_whose_run_is_held_is_not_stale(tmp_path):
    """Beats lost for longer than grace_period, but its run's lock held by a live job: the trial is left to
    that job. Once the lock is free, the same check fails it and queues a retry."""
    storage = open_storage(storage_url(None, tmp_path, "s"), 1, 1, retry_after_kill())
    study = optuna.create_study(storage=storage, study_name="s")
    trial = study.ask()
    trial.set_user_attr("run_id", "s-trial0")
    storage.record_heartbeat(trial._trial_id)
    time.sleep(2.2)  # stale to Optuna: no beat for more than grace_period
    runs = tmp_path / "runs"
    (runs / "s-trial0").mkdir(parents=True)
    with lock_held_elsewhere(runs / "s-trial0"):
        fail_stale_trials(study, runs)
        assert [t.state for t in study.get_trials()] == [TrialState.RUNNING]
    fail_stale_trials(study, runs)
    assert [t.state for t in study.get_trials()] == [TrialState.FAIL, TrialState.WAITING]


@pytest.mark.slow
@needs_postgresql
@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_a_storage_call_waits_out_an_outage_or_stops_in_one_line(postgres, capsys):
    """A call made while the server is down returns once it is back; one made with a wait shorter than the
    outage raises StorageOutage (exit 75, one line) when its wait is over, not before."""
    url = storage_url(postgres(), None, "s")
    study = optuna.create_study(storage=open_storage(url, 1, 2, None, outage_wait=30), study_name="s")
    outage = threading.Thread(target=postgres.stop_for, args=(3,))
    outage.start()
    time.sleep(0.5)
    assert study.get_trials() == []  # asked while the server is down
    outage.join()
    err = capsys.readouterr().err
    assert err.count("\n") == 2 and "does not answer" in err and "answers again after" in err, err

    impatient = optuna.load_study(storage=open_storage(url, 1, 2, None, outage_wait=2), study_name="s")
    outage = threading.Thread(target=postgres.stop_for, args=(6,))
    outage.start()
    time.sleep(0.5)
    began = time.monotonic()
    with pytest.raises(StorageOutage, match="did not answer for 2 s .tune.storage_wait.; this worker stops") as gone:
        impatient.ask()
    assert 1.5 < time.monotonic() - began < 4 and gone.value.exit_code == 75
    outage.join()


@pytest.mark.slow
@needs_postgresql
def test_an_outage_longer_than_storage_wait_stops_the_worker_and_its_trial_continues(tmp_path, postgres):
    config, path = blink_study(tmp_path, postgres(), storage_wait=2)
    worker = start_tune(path)
    blink_in_epoch_2(tmp_path, [worker], (0,), lambda: postgres.stop_for(12))
    out, err = worker.communicate(timeout=60)
    assert worker.returncode == 75 and "Traceback" not in err, err[-3000:]
    assert err.count("\n") == 2 and "error: the study storage" in err and "run the same command again" in err, err
    assert [t.state for t in load_study(config).trials] == [TrialState.RUNNING]  # nothing told: continuable

    again = start_tune(path)
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err[-3000:]
    assert "trial 0: its worker stopped on a storage outage; queued again to continue its run (s-trial0, no kill " \
        "counted)" in out and "Resume training from epoch" in out
    trials = load_study(config).trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
    assert [t.user_attrs["run_id"] for t in trials] == ["s-trial0", "s-trial0", "s-trial2"]
    assert trials[1].system_attrs[KILLS] == 0  # the outage was no fault of the trial: all its kill retries are left


def test_a_sqlite_file_locked_past_its_busy_timeout_is_waited_out(tmp_path, capsys):
    """tune.py's SQLite busy timeout is 60 s; here 0.5 s, so that a 3 s lock held by another process (a backup,
    a dashboard's long read) goes past it: the call is retried, not failed."""
    path = tmp_path / "s.db"
    storage = PatientStorage(f"sqlite:///{path}", 30, engine_kwargs={"connect_args": {"timeout": 0.5}})
    study = optuna.create_study(storage=storage, study_name="s")
    holder = sqlite_locked_for(path, 3)
    study.set_user_attr("note", "written through the lock")
    assert holder.wait(timeout=30) == 0
    assert optuna.load_study(study_name="s", storage=f"sqlite:///{path}").user_attrs == {
        "note": "written through the lock"}
    err = capsys.readouterr().err
    assert err.count("\n") == 2 and "does not answer (database is locked)" in err and "answers again" in err, err


def test_a_worker_stopped_by_an_outage_is_revived_without_counting_a_kill(tmp_path):
    """The stopping worker notes the outage in its trial's run folder (it cannot reach the database); the worker
    that revives the trial reads it there. A trial whose worker left no such note was killed."""
    runs = tmp_path / "runs"
    storage = open_storage(storage_url(None, tmp_path, "s"), None, None, None)
    study = optuna.create_study(storage=storage, study_name="s")
    for number, run_id in enumerate(("s-trial0", "s-trial1")):
        trial = study.ask()
        trial.set_user_attr("run_id", run_id)
        (runs / run_id).mkdir(parents=True)
        if number == 0:
            record_outage_exit(runs, trial)
    on_dead = retry_after_kill(runs)
    for trial in study.get_trials(states=(TrialState.RUNNING,)):
        assert fail_if_running(storage, trial._trial_id)
        on_dead(study, storage.get_trial(trial._trial_id))
    retries = {t.user_attrs["run_id"]: t for t in study.get_trials(states=(TrialState.WAITING,))}
    assert retries["s-trial0"].system_attrs[KILLS] == 0 and retries["s-trial1"].system_attrs[KILLS] == 1
