"""TensorBoard, checked for real: the event files read back with TensorBoard's own reader,
and a real `tensorboard` server answering over HTTP, both compared with metrics.csv."""
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator

from tests.helpers.cli import train_in_process
from tests.helpers.configs import shrink_config, write_config
from tests.helpers.network import free_port
from utils.metric_tracker import NOT_METRICS

BATCH_SIZE, N_TRAIN = 64, 600 - int(600 * 0.1)  # the synthetic set less the validation split
EPOCH_ONLY = ("epoch", "lr", "epoch_time", "samples_per_sec")  # metrics.csv columns that are no metric


def epoch_tag(column):
    """metrics.csv column -> the TensorBoard tag the trainer writes it under."""
    if column in ("lr", "epoch_time"):
        return column
    if column.startswith("val_"):
        return f"{column[4:]}/valid"
    return f"{column}/train"


@pytest.fixture(scope="module")
def tb_run(tmp_path_factory, synthetic_data_dir):
    """A 2-epoch run with TensorBoard on and the loss logged at every batch."""
    tmp = tmp_path_factory.mktemp("tb")
    cfg = shrink_config(tmp, synthetic_data_dir, tensorboard=True, log_step=1)
    config = train_in_process("-c", write_config(tmp, cfg))
    history = pd.read_csv(config.save_dir / "metrics.csv")
    return config, history


def read_events(log_dir):
    events = EventAccumulator(str(log_dir), size_guidance={SCALARS: 0})  # 0: keep every event
    events.Reload()
    return events


def test_every_epoch_value_of_metrics_csv_is_a_tensorboard_scalar(tb_run):
    config, history = tb_run
    events = read_events(config.log_dir)
    metric_columns = [c for c in history.columns if c not in EPOCH_ONLY]
    assert {"loss", "accuracy", "top_k_acc", "val_loss", "val_accuracy", "val_top_k_acc"} <= set(metric_columns)
    for column in [*metric_columns, "lr", "epoch_time", "samples_per_sec"]:
        scalars = events.Scalars(epoch_tag(column) if column != "samples_per_sec" else "samples_per_sec/train")
        assert [s.step for s in scalars] == [1, 2], column
        # event files hold float32
        assert [s.value for s in scalars] == pytest.approx(history[column].tolist(), rel=1e-6), column
    assert history["lr"].tolist() == [0.001, 0.001]


def test_tags_are_exactly_the_documented_ones(tb_run):
    config, history = tb_run
    tags = read_events(config.log_dir).Tags()
    expected = {epoch_tag(c) for c in history.columns if c not in ("epoch", "samples_per_sec")}
    summary = {t for t in tags["scalars"] if t.startswith("hparams/")}  # the HParams tab's final/best values
    assert set(tags["scalars"]) - summary == expected | {"samples_per_sec/train", "loss/step"}
    assert summary == {f"hparams/final_{c}" for c in history.columns if c not in NOT_METRICS} \
        | {"hparams/final_epoch", "hparams/best_val_loss", "hparams/best_epoch"}  # config.json: "min val_loss"
    assert tags["images"] == [] and tags["histograms"] == []  # optional, off by default


def test_step_loss_is_logged_every_log_step_and_averages_to_the_epoch_loss(tb_run):
    config, history = tb_run
    steps = read_events(config.log_dir).Scalars("loss/step")
    batches_per_epoch = math.ceil(N_TRAIN / BATCH_SIZE)
    assert [s.step for s in steps] == list(range(1, 2 * batches_per_epoch + 1))  # global step, log_step=1
    sizes = [BATCH_SIZE] * (batches_per_epoch - 1) + [N_TRAIN - BATCH_SIZE * (batches_per_epoch - 1)]
    for epoch, loss in zip(history["epoch"], history["loss"], strict=True):
        batch_losses = [s.value for s in steps[(epoch - 1) * batches_per_epoch:epoch * batches_per_epoch]]
        weighted = sum(v * n for v, n in zip(batch_losses, sizes, strict=True)) / N_TRAIN
        assert weighted == pytest.approx(loss, rel=1e-5)


def test_optional_image_grids_and_histograms(tmp_path, synthetic_data_dir):
    cfg = shrink_config(tmp_path, synthetic_data_dir, tensorboard=True, epochs=1, len_epoch=2, log_step=1,
                        tensorboard_images=True, tensorboard_histograms=True)
    config = train_in_process("-c", write_config(tmp_path, cfg))
    tags = read_events(config.log_dir).Tags()
    assert tags["images"] == ["input/step"]
    assert set(tags["histograms"]) == {"conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias",
                                       "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}
    grids = read_events(config.log_dir).Images("input/step")
    assert [g.step for g in grids] == [1, 2]
    assert grids[0].width > 28 and grids[0].height > 28  # a grid of several 28x28 digits


# ---- a real TensorBoard server -------------------------------------------------
def tensorboard_command():
    script = Path(sys.executable).with_name("tensorboard")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "tensorboard.main"]


def get_json(url):
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def wait_for_tags(base, server, deadline_s=60):
    """Poll the scalar tags until the server has loaded a run with an epoch tag (bounded)."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        assert server.poll() is None, "tensorboard exited early"
        try:
            runs = get_json(f"{base}/data/plugin/scalars/tags")
            if any("loss/valid" in tags for tags in runs.values()):
                return runs
        except (urllib.error.URLError, ConnectionError, json.JSONDecodeError):
            pass  # not listening or not loaded yet
        time.sleep(0.25)
    pytest.fail(f"tensorboard did not serve the run's scalars within {deadline_s} s")


def stop(server):
    """End the server and the data-server process it starts (its own process group)."""
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)


def running_in_group(pgid):
    """Pids of the process group that still run; a zombie has exited and only waits to be reaped."""
    running = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, _, group = stat.read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, IndexError):
            continue  # gone while we looked
        if int(group) == pgid and state != "Z":
            running.append(int(stat.parent.name))
    return running


def assert_stopped(server, port, deadline_s=10):
    """The server and the data server it started have exited, and nothing answers on its port any more."""
    assert server.poll() is not None, "tensorboard still runs"
    deadline = time.monotonic() + deadline_s
    while running_in_group(server.pid) and time.monotonic() < deadline:
        time.sleep(0.1)  # its data server exits once its stdin, the server, is gone
    assert running_in_group(server.pid) == [], "a process tensorboard started outlived it"
    with socket.socket() as sock, pytest.raises(ConnectionRefusedError):
        sock.connect(("127.0.0.1", port))


@pytest.mark.slow
def test_tensorboard_server_serves_the_runs_scalars(tb_run, tmp_path):
    config, history = tb_run
    logdir = Path(config["trainer"]["save_dir"]) / "log"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([*tensorboard_command(), "--logdir", str(logdir), "--port", str(port),
                               "--host", "127.0.0.1"], stdout=subprocess.DEVNULL,
                              stderr=(tmp_path / "tensorboard.log").open("wb"), start_new_session=True)
    try:
        runs = wait_for_tags(base, server)
        run = config.log_dir.relative_to(logdir).as_posix()  # TensorBoard names a run by its sub-folder
        assert list(runs) == [run]
        assert {"loss/train", "loss/valid", "accuracy/valid", "lr", "samples_per_sec/train",
                "loss/step"} <= set(runs[run])
        for column in ("loss", "val_loss", "val_accuracy", "lr"):
            query = urllib.parse.urlencode({"run": run, "tag": epoch_tag(column)})
            points = get_json(f"{base}/data/plugin/scalars/scalars?{query}")  # [[wall_time, step, value]]
            assert [step for _, step, _ in points] == history["epoch"].tolist(), column
            assert [value for _, _, value in points] == pytest.approx(history[column].tolist(), rel=1e-6)
    finally:
        stop(server)
    assert_stopped(server, port)
