"""Trackers when something is wrong (docs/trackers.md): a misspelt arg is refused before training, a store that
cannot be opened is one warning line and no more, a pruned trial's tracker run says it was pruned, and a run
that an exception ends is FAILED."""
import time

import pytest

from tests.helpers.cli import run_cli, train_in_process
from tests.helpers.configs import shrink_config, write_config
from tests.helpers.runs import run_dirs
from tests.helpers.tune_setup import tune_config

MISSPELT = [({"type": "mlflow", "args": {"trackinguri": "sqlite:///x.db"}},
             "unknown mlflow arg 'trackinguri'; did you mean 'tracking_uri'?"),
            ({"type": "wandb", "args": {"projct": "mnist"}}, "unknown wandb arg 'projct'; did you mean 'project'?")]


@pytest.mark.parametrize("tracker, expected", MISSPELT, ids=["mlflow", "wandb"])
@pytest.mark.parametrize("script", ["train", "tune"])
def test_a_misspelt_tracker_arg_is_one_line_before_training(script, tracker, expected, tmp_path, synthetic_data_dir,
                                                            monkeypatch, capsys):
    """Not a warning and an untracked run that exits 0: exit 2, naming the arg it means, before any folder."""
    config = tune_config(tmp_path, synthetic_data_dir, trainer={"epochs": 1, "trackers": [tracker]})
    if script == "train":
        config.pop("tune")
    code, _, err = run_cli(script, ["-c", write_config(tmp_path, config)], monkeypatch, capsys)
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: ") and expected in err, err
    assert run_dirs(tmp_path / "saved") == [] and not (tmp_path / "saved" / "tune").exists()


def test_another_wandb_init_keyword_is_passed_on():
    from utils.tracker_specs import parse_trackers

    (spec,) = parse_trackers([{"type": "wandb", "args": {"group": "sweep", "my_own_keyword": 1}}])
    assert spec.args == {"group": "sweep", "my_own_keyword": 1}



def test_a_store_that_cannot_be_opened_is_one_warning_line_at_once(tmp_path, synthetic_data_dir, monkeypatch, capfd):
    """A SQLite store on a read-only disk: MLflow itself would log each of ten retries (about 100 s, 60 lines)."""
    from tests.helpers.tmpfs import tmpfs

    with tmpfs(tmp_path / "readonly", "1m", read_only=True) as readonly:
        store = {"type": "mlflow", "args": {"tracking_uri": f"sqlite:///{readonly / 'mlflow.db'}"}}
        config = shrink_config(tmp_path, synthetic_data_dir, epochs=1, verbosity=1, trackers=[store])
        started = time.monotonic()
        code, out, err = run_cli("train", ["-c", write_config(tmp_path, config)], monkeypatch, capfd)
    assert code == 0, err
    assert time.monotonic() - started < 40
    said = [line for line in (out + err).splitlines() if "mlflow" in line.lower() or "sqlalchemy" in line.lower()]
    assert len(said) == 1 and said[0].startswith("Warning: tracker mlflow cannot be reached"), said
    (run,) = run_dirs(tmp_path / "saved")
    assert (run / "metrics.csv").read_text().count("\n") == 2  # the run folder keeps every metric


@pytest.mark.slow
def test_a_pruned_trial_is_a_finished_mlflow_run_tagged_pruned(tmp_path, synthetic_data_dir, monkeypatch, capsys):
    """Not FAILED: the pruner stopping a trial after whole, saved epochs is no failure (docs/trackers.md)."""
    from optuna.trial import TrialState

    from tests.helpers.tracker_stores import mlflow_runs
    from tests.helpers.tune_setup import load_study

    config = tune_config(tmp_path, synthetic_data_dir, trainer={"epochs": 2, "trackers": ["mlflow"]}, trials=1,
                         pruner={"type": "ThresholdPruner", "args": {"upper": 0.0}})  # every val_loss is above
    code, _, err = run_cli("tune", ["-c", write_config(tmp_path, config)], monkeypatch, capsys)
    assert code == 0, err
    assert [t.state for t in load_study(config).trials] == [TrialState.PRUNED]
    _, (run,) = mlflow_runs(tmp_path / "saved")
    assert (run.info.status, run.data.tags.get("pruned")) == ("FINISHED", "true")


def test_a_server_gone_mid_run_is_one_warning_line(monkeypatch, caplog):
    """MLflow's HTTP retries (2 mid-run) would each be a urllib3 warning line before the tracker's own one."""
    import logging

    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    from logger.metrics_sink import MetricsSink
    from logger.trackers.mlflow_tracker import MlflowTracker
    from logger.trackers.tracker_set import TrackerPeer, TrackerSet
    from tests.helpers.network import free_port

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    gone = f"http://127.0.0.1:{free_port()}"  # the server the run connected to, now gone
    trackers = TrackerSet([{"type": "mlflow", "args": {"tracking_uri": gone}}])
    tracker = MlflowTracker({"tracking_uri": gone})
    tracker.client, tracker.run_id = MlflowClient(tracking_uri=gone), "0123456789abcdef0123456789abcdef"
    trackers.active.append(TrackerPeer(trackers, trackers.specs[0], tracker))
    sink = MetricsSink(trackers=trackers)
    with caplog.at_level(logging.WARNING):
        tracker.buffer.append(Metric("loss", 1.0, 0, 1))
        sink.flush()
    said = [record.getMessage() for record in caplog.records]
    assert len(said) == 1 and said[0].startswith("Warning: tracker mlflow failed (MlflowException"), said
    assert trackers.active == []


def test_a_run_that_an_exception_ends_is_a_failed_mlflow_run_with_its_epochs(tmp_path, synthetic_data_dir,
                                                                            monkeypatch):
    """The tracker run ends FAILED (not FINISHED, not left RUNNING), and keeps what the run logged before."""
    from tests.helpers.tracker_stores import mlflow_runs, steps
    from tests.helpers.tune_setup import after_each_epoch

    def crash(epoch):
        raise RuntimeError("a bug in epoch 2's code")
    after_each_epoch(monkeypatch, lambda epoch: epoch == 2 and crash(epoch))
    cfg = write_config(tmp_path, shrink_config(tmp_path, synthetic_data_dir, epochs=3, trackers=["mlflow"]))
    with pytest.raises(RuntimeError, match="epoch 2"):
        train_in_process("-c", cfg)
    client, (run,) = mlflow_runs(tmp_path / "saved")
    assert run.info.status == "FAILED"
    assert steps(client, run.info.run_id, "loss/train") == [1, 2]
