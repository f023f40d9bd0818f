"""Experiment trackers (trainer.trackers), read back from their own stores: MLflow's SQLite
store through MlflowClient, W&B's offline run files, TensorBoard's HParams summary."""
import json
import math
import re
import subprocess
import sys
import time

import pandas as pd
import pytest
from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from tests.helpers.cli import run_cli, run_script, train_in_process
from tests.helpers.configs import shrink_config, write_config
from tests.helpers.network import free_port
from tests.helpers.paths import REPO
from tests.helpers.runs import run_dirs
from tests.helpers.tracker_stores import mlflow_runs, steps, wandb_segments
from utils.config.dotted import flatten

pytest.importorskip("mlflow")
pytest.importorskip("wandb")
STEPS_PER_EPOCH = 9  # 540 synthetic training samples in batches of 64


@pytest.fixture(scope="module")
def tracked(tmp_path_factory, synthetic_data_dir):
    """One 2-epoch run writing to MLflow, W&B (offline) and TensorBoard, monitoring val_loss."""
    tmp = tmp_path_factory.mktemp("tracked")
    cfg = shrink_config(tmp, synthetic_data_dir, trackers=["mlflow", "wandb", "tensorboard"],
                        monitor="min val_loss", log_step=1)
    config = train_in_process("-c", write_config(tmp, cfg))
    return config, pd.read_csv(config.save_dir / "metrics.csv")


def test_mlflow_holds_the_config_metrics_tags_and_artifacts_of_the_run(tracked):
    config, history = tracked
    client, runs = mlflow_runs(config.save_dir.parents[2])
    (run,) = runs
    assert run.info.status == "FINISHED"
    assert run.data.params == {k: str(v) for k, v in flatten(config.config).items()}
    for column, tag in (("loss", "loss/train"), ("val_loss", "loss/valid"), ("val_accuracy", "accuracy/valid")):
        points = sorted(client.get_metric_history(run.info.run_id, tag), key=lambda m: m.step)
        assert [m.step for m in points] == [1, 2]
        assert [m.value for m in points] == pytest.approx(history[column].tolist(), rel=1e-6)
    assert steps(client, run.info.run_id, "loss/step") == list(range(1, 2 * STEPS_PER_EPOCH + 1))  # log_step 1
    tags = run.data.tags
    assert tags["run_folder"] == str(config.save_dir.absolute()) and tags["run_id"] == config.run_id
    assert tags["world_size"] == "1" and len(tags["git_commit"]) == 40
    artifacts = client.download_artifacts(run.info.run_id, "")
    assert json.load(open(f"{artifacts}/config.json")) == config.config
    assert pd.read_csv(f"{artifacts}/metrics.csv").equals(history)
    best = open(f"{artifacts}/best_checkpoint.txt").read().strip()
    assert best == str((config.save_dir / "model_best.pth").absolute())
    stored = config.save_dir.parents[2] / "mlflow-artifacts"  # the embedded store's artifacts, beside mlflow.db
    assert sorted(p.name for p in stored.rglob("*") if p.is_file()) == ["best_checkpoint.txt", "config.json",
                                                                         "metrics.csv"]
    assert json.loads((config.save_dir / "trackers.json").read_text())["mlflow"]["run_id"] == run.info.run_id


def test_wandb_writes_one_offline_run_named_in_the_run_folder(tracked):
    config, history = tracked
    (segment,) = wandb_segments(config.log_dir)
    run_id, rows, exit_code = segment
    assert run_id == json.loads((config.save_dir / "trackers.json").read_text())["wandb"]["id"]
    assert re.fullmatch(rf"{re.escape(config.run_id)}-[a-z0-9]{{8}}", run_id) and exit_code == 0  # <run_id>-<8 random>
    logged = [int(r["_step"]) for r in rows]
    assert logged == sorted(set(logged)) and logged[-1] == 2 * STEPS_PER_EPOCH  # the trainer's global step
    val_losses = [float(r["loss/valid"]) for r in rows if "loss/valid" in r]
    assert val_losses == pytest.approx(history["val_loss"].tolist(), rel=1e-6)


def test_tensorboard_hparams_tab_gets_the_settings_and_final_and_best_metrics(tracked):
    config, history = tracked
    events = EventAccumulator(str(config.log_dir), size_guidance={SCALARS: 0})
    events.Reload()
    content = events.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    hparams = start.session_start_info.hparams
    assert hparams["optimizer.args.lr"].number_value == pytest.approx(0.001)
    assert hparams["arch.type"].string_value == "MnistModel"
    assert sorted(hparams) == sorted(flatten(config.config))  # every setting: TensorBoard finds those that differ
    assert "_hparams_/experiment" not in content  # no column list: TensorBoard computes it over all the runs
    assert {"hparams/final_val_loss", "hparams/best_val_loss", "hparams/final_accuracy"} <= \
        set(events.Tags()["scalars"])
    assert events.Scalars("hparams/final_val_loss")[-1].value == pytest.approx(history["val_loss"].iloc[-1], rel=1e-6)
    assert events.Scalars("hparams/best_val_loss")[-1].value == pytest.approx(history["val_loss"].min(), rel=1e-6)


def test_a_run_without_trackers_imports_none(tmp_path, synthetic_data_dir):
    cfg = write_config(tmp_path, shrink_config(tmp_path, synthetic_data_dir, epochs=1))
    code = ("import sys; from tests.helpers.cli import train_in_process; "
            f"train_in_process('-c', {str(cfg)!r}); "
            "print('imported:', sorted(m for m in ('mlflow', 'wandb') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "imported: []" in done.stdout
    assert not (tmp_path / "saved" / "mlflow.db").exists()


def test_an_unknown_tracker_name_gets_did_you_mean(tmp_path, synthetic_data_dir):
    cfg = shrink_config(tmp_path, synthetic_data_dir, trackers=["tensorboard", "mlfow"])
    done = run_script("train.py", "-c", write_config(tmp_path, cfg), timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip() == ("error: config: trainer.trackers: unknown tracker 'mlfow'; did you mean "
                                   "'mlflow'? known trackers: mlflow, wandb, tensorboard")
    assert run_dirs(tmp_path / "saved") == []


def dead_uri():
    return f"http://127.0.0.1:{free_port()}"  # a port nobody listens on once closed


def test_an_unreachable_tracking_server_is_one_warning_and_training_goes_on(tmp_path, synthetic_data_dir):
    cfg = shrink_config(tmp_path, synthetic_data_dir, epochs=1,
                        trackers=[{"type": "mlflow", "args": {"tracking_uri": dead_uri()}}])
    started = time.monotonic()
    done = run_script("train.py", "-c", write_config(tmp_path, cfg), timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert time.monotonic() - started < 60
    warnings = [line for line in (done.stdout + done.stderr).splitlines() if "tracker mlflow" in line]
    assert len(warnings) == 1 and "cannot be reached" in warnings[0], warnings
    (run,) = run_dirs(tmp_path / "saved")
    assert pd.read_csv(run / "metrics.csv")["epoch"].tolist() == [1]
    assert not math.isnan(pd.read_csv(run / "metrics.csv")["val_loss"].iloc[0])


def test_a_required_tracker_that_cannot_be_reached_is_one_line_and_exit_2(tmp_path, synthetic_data_dir):
    cfg = shrink_config(tmp_path, synthetic_data_dir, epochs=1,
                        trackers=[{"type": "mlflow", "args": {"tracking_uri": dead_uri(), "required": True}}])
    done = run_script("train.py", "-c", write_config(tmp_path, cfg), timeout=120)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: tracker mlflow cannot be reached") and "required" in lines[0]
    assert run_dirs(tmp_path / "saved") == []


def test_classic_writer_calls_reach_the_trackers(tmp_path):
    """A classic trainer's `set_step` + `add_scalar` / `add_scalars` land in MLflow with TensorBoard's tags."""
    from logger import TensorboardWriter
    from logger.metrics_sink import MetricsSink
    from logger.trackers.run_info import RunInfo
    from logger.trackers.tracker_set import TrackerSet

    trackers = TrackerSet(["mlflow"])
    trackers.connect(tmp_path, "Mnist_LeNet")
    (tmp_path / "run").mkdir()
    trackers.open_run(RunInfo("Mnist_LeNet", "run", tmp_path / "run", tmp_path / "log", {"name": "Mnist_LeNet"}))
    writer = MetricsSink(TensorboardWriter(tmp_path / "log", enabled=False), trackers)  # what self.writer is
    assert writer.enabled and not writer.tensorboard.enabled  # trackers on, TensorBoard off: no event files
    writer.set_step(7, "valid")
    writer.add_scalar("loss", 0.25)
    writer.add_scalars("acc", {"top1": 0.5})
    writer.close()
    client, (run,) = mlflow_runs(tmp_path)
    assert run.info.status == "FINISHED"
    assert {key: [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, key)]
            for key in ("loss/valid", "acc/valid/top1")} == {"loss/valid": [(7, 0.25)], "acc/valid/top1": [(7, 0.5)]}
    assert not list((tmp_path / "log").glob("events.*"))


@pytest.mark.slow
def test_a_search_trial_is_tagged_with_its_study_and_trial(tmp_path, synthetic_data_dir, monkeypatch, capsys):
    from tests.helpers.tune_setup import tune_config

    config = tune_config(tmp_path, synthetic_data_dir, trainer={"epochs": 1, "trackers": ["mlflow"],
                                                                 "monitor": "min val_loss"}, trials=1)
    code, out, err = run_cli("tune", ["-c", write_config(tmp_path, config)], monkeypatch, capsys)
    assert code == 0, out + err
    _, runs = mlflow_runs(tmp_path / "saved")
    (run,) = runs
    assert run.data.tags["tune_study"] == "s" and run.data.tags["tune_trial"] == "0"
    assert run.data.tags["run_id"] == "s-trial0"
    assert f"MLflow: run {run.info.run_id} in sqlite:///" in out and "  look: mlflow ui --backend-store-uri" in out
