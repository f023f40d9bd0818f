"""The metrics sink (logger/metrics_sink.py): TensorBoard, MLflow and W&B are peers. Each gets every scalar
when it is on, none is on because another is, and classic `self.writer` calls reach all of them."""
import pandas as pd
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator

from logger import TensorboardWriter
from logger.metrics_sink import MetricsSink
from logger.trackers.tracker_set import TrackerSet
from tests.helpers.cli import train_in_process
from tests.helpers.configs import shrink_config, write_config
from tests.helpers.tracker_stores import mlflow_runs, steps
from utils import tracker_specs as specs
from utils.metric_tracker import MetricTracker

STEPS_PER_EPOCH = 9  # 540 synthetic training samples in batches of 64


class Recorder:
    """A tracker that keeps every scalar it is given, as (step, tag, value)."""

    made = []

    def __init__(self, args):
        self.scalars = []
        Recorder.made.append(self)

    def connect(self, save_root, experiment):
        pass

    def log_scalars(self, scalars, step):
        self.scalars += [(step, tag, float(value)) for tag, value in scalars.items()]

    def flush(self):
        pass

    def end_epoch(self, epoch, log, best):
        pass

    def finish(self, status):
        self.status = status

    def where(self):
        return []


@pytest.fixture
def recorder(monkeypatch):
    """`"recorder"` is a tracker name for this test: trainer.trackers may list it."""
    monkeypatch.setitem(specs.KNOWN, "recorder", f"{__name__}:Recorder")
    monkeypatch.setattr(Recorder, "made", [])


def connected(names, tmp_path):
    trackers = TrackerSet(names)
    trackers.connect(tmp_path, "experiment")
    return trackers


def classic_calls(writer):
    """What a classic trainer writes through `self.writer`, and the sink's own `log` and `write`."""
    writer.set_step(3, "valid")  # a step after 0: also steps_per_sec/valid
    writer.add_scalar("loss", 0.5)
    writer.add_scalars("acc", {"top1": 0.25})
    writer.add_histogram("fc.weight", torch.ones(8))
    writer.add_image("input", torch.zeros(1, 4, 4))
    writer.write("add_scalar", "loss/step", 0.75, 9)
    writer.log({"lr": 0.125}, 1)
    writer.close()


def epoch_tag(column):
    """metrics.csv column -> the tag the trainer writes it under."""
    if column in ("lr", "epoch_time"):
        return column
    return f"{column[4:]}/valid" if column.startswith("val_") else f"{column}/train"


def event_scalars(log_dir):
    events = EventAccumulator(str(log_dir), size_guidance={SCALARS: 0})
    events.Reload()
    return events, {tag: [(s.step, s.value) for s in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_tensorboard_off_and_a_tracker_on_the_tracker_gets_every_scalar_and_no_event_file_is_written(
        tmp_path, recorder):
    writer = MetricsSink(TensorboardWriter(tmp_path / "log", enabled=False), connected(["recorder"], tmp_path))
    classic_calls(writer)
    (tracker,) = Recorder.made
    assert [(step, tag) for step, tag, _ in tracker.scalars] == [
        (3, "steps_per_sec/valid"), (3, "loss/valid"), (3, "acc/valid/top1"), (9, "loss/step"), (1, "lr")]
    assert [value for *_, value in tracker.scalars][1:] == [0.5, 0.25, 0.75, 0.125]
    assert tracker.status == "FINISHED"
    assert not (tmp_path / "log").exists()


def test_tensorboard_on_and_no_tracker_writes_event_files_and_calls_no_tracker(tmp_path, recorder):
    tensorboard = TensorboardWriter(tmp_path / "log", enabled=True)
    writer = MetricsSink(tensorboard, connected(["tensorboard"], tmp_path))  # listing TensorBoard adds no tracker
    assert writer.peers == [tensorboard]
    classic_calls(writer)
    events, scalars = event_scalars(tmp_path / "log")
    assert {tag: [step for step, _ in points] for tag, points in scalars.items()} == {
        "steps_per_sec/valid": [3], "loss/valid": [3], "loss/step": [9], "lr": [1]}
    assert scalars["loss/valid"] == [(3, 0.5)] and scalars["lr"] == [(1, 0.125)]
    assert events.Tags()["histograms"] == ["fc.weight"] and events.Tags()["images"] == ["input/valid"]
    assert list((tmp_path / "log").glob("acc*/events.*"))  # add_scalars: TensorBoard's own sub-run, as before
    assert Recorder.made == []


def test_with_no_peer_the_sink_is_a_no_op(tmp_path):
    writer = MetricsSink(TensorboardWriter(tmp_path / "log", enabled=False), connected([], tmp_path))
    assert writer.peers == [] and not writer.enabled
    classic_calls(writer)
    writer.end_epoch(1, {"epoch": 1, "loss": 0.5}, {"metric": None})
    assert list(tmp_path.iterdir()) == []


def test_a_classic_self_writer_call_on_the_trainer_reaches_the_trackers(tmp_path, synthetic_data_dir, recorder):
    import train

    config = shrink_config(tmp_path, synthetic_data_dir, trackers=["recorder"])
    trainer = train.build_trainer(train.parse_args(["-c", str(write_config(tmp_path, config))]))
    trainer.writer.trackers.connect(tmp_path, "experiment")  # what train() does before the first epoch
    metrics = MetricTracker("loss", writer=trainer.writer)  # the classic Trainer's own trackers
    trainer.writer.set_step(5)
    metrics.update("loss", torch.tensor(0.5))
    trainer.writer.add_scalar("accuracy", 0.75)
    (tracker,) = Recorder.made
    assert tracker.scalars[-2:] == [(5, "loss/train", 0.5), (5, "accuracy/train", 0.75)]


def test_a_run_with_tensorboard_off_and_mlflow_on_gives_mlflow_every_scalar_and_writes_no_event_file(
        tmp_path, synthetic_data_dir):
    pytest.importorskip("mlflow")
    cfg = shrink_config(tmp_path, synthetic_data_dir, trackers=["mlflow"], tensorboard=False, log_step=1)
    config = train_in_process("-c", write_config(tmp_path, cfg))
    history = pd.read_csv(config.save_dir / "metrics.csv")
    client, (run,) = mlflow_runs(tmp_path / "saved")
    # every scalar TensorBoard would have had (tests/test_tensorboard.py), less HParams: TensorBoard's own tab
    tags = [epoch_tag(column) for column in history.columns if column != "epoch"]
    assert set(run.data.metrics) == {*tags, "loss/step"}
    for tag in tags:
        assert steps(client, run.info.run_id, tag) == [1, 2], tag
    assert steps(client, run.info.run_id, "loss/step") == list(range(1, 2 * STEPS_PER_EPOCH + 1))
    assert list((tmp_path / "saved").rglob("events.out.tfevents.*")) == []


def test_a_classic_tensorboard_writer_built_by_classic_code_works_on_its_own(tmp_path):
    import logging

    writer = TensorboardWriter(tmp_path / "log", logging.getLogger("trainer"), True)  # the classic signature
    writer.set_step(4)
    writer.add_scalar("loss", 0.5)
    writer.close()
    assert event_scalars(tmp_path / "log")[1]["loss/train"] == [(4, 0.5)]
    off = TensorboardWriter(tmp_path / "off", logging.getLogger("trainer"), False)
    off.set_step(4)
    off.add_scalar("loss", 0.5)
    assert not (tmp_path / "off").exists()


def test_importing_the_mlflow_peer_changes_no_environment_variable():
    import subprocess
    import sys

    from tests.helpers.paths import REPO

    code = ("import os; before = dict(os.environ); import logger.trackers.mlflow_tracker; "
            "print(sorted(set(os.environ.items()) ^ set(before.items())))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"  # MLflow's retry settings are set when the tracker connects
