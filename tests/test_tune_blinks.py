"""The study database may blink (docs/search.md, "Faults"): a PostgreSQL restart or a 3-second outage while
two workers train. Both workers wait it out, finish, and record every trial they trained; neither fails the
other's live trial; no traceback."""
import time

import pytest
from optuna.trial import TrialState

from tests.helpers.skips import needs_postgresql
from tests.helpers.tune_setup import load_study, start_tune, tune_config, write
from tests.synthetic_mnist import write_synthetic_mnist

RUNS = ("saved", "models", "Mnist_LeNet")


def two_workers_through(tmp_path, storage, blink):
    """Two workers on a 2-trial study with a fast heartbeat (1 s, stale after 2 s); `blink()` once both
    trials are in their second epoch. Returns (the study's config, [(exit code, stdout, stderr)] per worker)."""
    data = write_synthetic_mnist(tmp_path / "data", n_train=2000, n_test=10)
    config = tune_config(tmp_path, data, trainer={"epochs": 3}, trials=2, storage=storage, heartbeat_interval=1,
                         grace_period=2)
    config["data_loader"]["args"]["batch_size"] = 8  # 225 batches an epoch: the blink lands inside one
    path = write(tmp_path, config)
    workers = [start_tune(path) for _ in range(2)]
    runs = tmp_path.joinpath(*RUNS)
    deadline = time.monotonic() + 240
    while not all((runs / f"s-trial{k}" / "checkpoint-epoch1.pth").exists() for k in (0, 1)):
        assert time.monotonic() < deadline and all(w.poll() is None for w in workers), "no blink: a worker ended"
        time.sleep(0.05)
    blink()
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
