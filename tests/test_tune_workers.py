"""Many tune.py workers on one study: creation races at the same instant on SQLite and PostgreSQL,
four workers sharing the trials (none starts a trial past those wanted), and a killed, then stopped,
trial that resumes to the exact metrics of an uninterrupted one."""
import csv
import multiprocessing
import signal

import optuna
import pytest
from optuna.trial import TrialState

from search.recovery import retry_after_kill
from search.storage import open_storage, open_study, storage_url
from search.trial_loop import run_trials
from tests.helpers.skips import needs_postgresql
from tests.helpers.tune_setup import KILL, load_study, signal_when, start_tune, tune_config, write
from tests.synthetic_mnist import write_synthetic_mnist
from utils.signals import StopSignals

WORKERS = 8


def _open_at_once(url, barrier, results):
    try:
        barrier.wait(timeout=30)
        open_study(open_storage(url, 30, 120, None), "s", "minimize", None, None)
        results.put("ok")
    except BaseException as err:  # noqa: B036 - every failure is a result here
        results.put(repr(err))


def open_from_many_processes(url):
    """WORKERS processes released together by a barrier, each opening the storage and the study."""
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(WORKERS), context.Queue()
    processes = [context.Process(target=_open_at_once, args=(url, barrier, results)) for _ in range(WORKERS)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    return [results.get(timeout=5) for _ in processes]


@pytest.mark.slow
def test_creating_a_sqlite_study_at_the_same_instant(tmp_path):
    """Without the retries, all but one of these processes fail ("table studies already exists")."""
    assert open_from_many_processes(storage_url(None, tmp_path, "s")) == ["ok"] * WORKERS


@pytest.mark.slow
@needs_postgresql
def test_creating_a_postgresql_study_at_the_same_instant(postgres):
    assert open_from_many_processes(storage_url(postgres(), None, "s")) == ["ok"] * WORKERS


def four_workers(tmp_path, data_dir, storage=None):
    config = tune_config(tmp_path, data_dir, trainer={"epochs": 1}, trials=4, storage=storage)
    path = write(tmp_path, config)
    workers = [start_tune(path) for _ in range(4)]
    outputs = [worker.communicate(timeout=240) for worker in workers]
    for worker, (out, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0 and "Traceback" not in err, out[-1500:] + err[-3000:]
    trials = load_study(config).trials
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 4 and len(complete) == len(trials)
    runs = {t.user_attrs["run_id"] for t in complete}
    assert runs == {f"s-trial{t.number}" for t in complete}
    assert all((tmp_path / "saved" / "models" / "Mnist_LeNet" / run / "model_best.pth").is_file() for run in runs)


@pytest.mark.slow
def test_four_workers_share_a_fresh_sqlite_study(tmp_path, synthetic_data_dir):
    four_workers(tmp_path, synthetic_data_dir)


@pytest.mark.slow
@needs_postgresql
def test_four_workers_share_a_fresh_postgresql_study(tmp_path, synthetic_data_dir, postgres):
    four_workers(tmp_path, synthetic_data_dir, storage=postgres())


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # a study asked outside Study.optimize, as tune.py does
def test_a_worker_leaves_the_last_trials_to_the_workers_running_them(tmp_path, capsys):
    """2 trials wanted, one COMPLETE and one RUNNING in another live worker: this worker starts none (a third
    would finish past the 2 wanted) and ends in one line. With 3 wanted it trains one, then ends the same way."""
    study = optuna.create_study(storage=open_storage(storage_url(None, tmp_path, "s"), 30, 120, retry_after_kill()),
                                study_name="s")
    study.add_trial(optuna.trial.create_trial(value=1.0))
    elsewhere = study.ask()  # trial 1, beating: its worker is alive
    study._storage.record_heartbeat(elsewhere._trial_id)
    trained = []

    def objective(trial):
        trained.append(trial.number)
        return 0.5
    run_trials(study, 2, objective, StopSignals(), lambda *_: None, tmp_path / "runs")
    assert trained == [] and [t.state for t in study.get_trials()] == [TrialState.COMPLETE, TrialState.RUNNING]
    assert "the study's last trials (1) run in other workers: this worker ends" in capsys.readouterr().out
    run_trials(study, 3, objective, StopSignals(), lambda *_: None, tmp_path / "runs")
    assert trained == [2] and [t.state for t in study.get_trials()][1:] == [TrialState.RUNNING, TrialState.COMPLETE]


def metrics_without_timing(run):
    with open(run / "metrics.csv", newline="") as handle:
        return [{k: v for k, v in row.items() if k not in ("epoch_time", "samples_per_sec")}
                for row in csv.DictReader(handle)]


@pytest.mark.slow
def test_killed_then_stopped_trial_resumes_exactly(tmp_path):
    """SIGKILL in epoch 2, the same command at once (no heartbeat grace wait), SIGTERM in epoch 3,
    the same command again: the trial ends with the metrics of an uninterrupted one, bit for bit."""
    data = write_synthetic_mnist(tmp_path / "data", n_train=2000, n_test=10)
    one_point = {"optimizer.args.lr": {"type": "categorical", "choices": [0.002]}}
    config = tune_config(tmp_path, data, space=one_point, trainer={"epochs": 3}, trials=1)
    config["data_loader"]["args"]["batch_size"] = 4  # 450 batches an epoch: time to signal inside one
    path = write(tmp_path, config)
    runs = tmp_path / "saved" / "models" / "Mnist_LeNet"

    reference = start_tune(path, "--study", "ref")
    assert reference.wait(timeout=300) == 0, reference.stderr.read()

    killed = start_tune(path)
    assert signal_when(killed, runs / "s-trial0" / "checkpoint-epoch1.pth", KILL)
    assert killed.wait(timeout=60) == -KILL

    stopped = start_tune(path)
    assert signal_when(stopped, runs / "s-trial0" / "checkpoint-epoch2.pth", signal.SIGTERM)
    out, err = stopped.communicate(timeout=120)
    assert stopped.returncode == 143, err[-3000:]
    assert "trial 0: its worker is gone; queued again" in out and "Resume training from epoch 2" in out
    assert "run the same command again to continue it" in err

    finished = start_tune(path)
    out, err = finished.communicate(timeout=300)
    assert finished.returncode == 0, err[-3000:]
    assert "Resume training from epoch 3" in out
    trials = load_study(config).trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.FAIL, TrialState.COMPLETE]
    assert {t.user_attrs["run_id"] for t in trials} == {"s-trial0"}
    assert metrics_without_timing(runs / "s-trial0") == metrics_without_timing(runs / "ref-trial0")
    assert trials[-1].value == load_study({**config, "tune": {**config["tune"], "study": "ref"}}).best_value
