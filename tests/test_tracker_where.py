"""The end of a tracked run says where each tracker's run is and the command to look at it."""
from pathlib import Path

import pytest

from logger.trackers.run_info import RunInfo
from logger.trackers.tracker_set import TrackerSet


def finished(tmp_path, name):
    trackers = TrackerSet([name])
    trackers.connect(tmp_path, "Mnist_LeNet")
    (tmp_path / "run").mkdir()
    trackers.open_run(RunInfo("Mnist_LeNet", "run", tmp_path / "run", tmp_path / "log", {"name": "Mnist_LeNet"}))
    trackers.finish()
    return trackers


def test_mlflow_says_its_store_and_the_mlflow_ui_command(tmp_path):
    pytest.importorskip("mlflow")
    trackers = finished(tmp_path, "mlflow")
    store = f"sqlite:///{tmp_path.absolute() / 'mlflow.db'}"
    assert trackers.where == [f"MLflow: run {trackers.ids['mlflow']['run_id']} in {store}",
                              f"  look: mlflow ui --backend-store-uri {store}  (needs the full mlflow package: "
                              "pip install mlflow)"]


def test_wandb_offline_says_its_folder_and_the_wandb_sync_command(tmp_path):
    pytest.importorskip("wandb")
    trackers = finished(tmp_path, "wandb")
    (folder,) = (tmp_path / "log" / "wandb").glob("offline-run-*")
    assert trackers.where == [f"W&B: offline run in {folder}", f"  upload: wandb sync {folder}"]
    assert Path(folder, f"run-{trackers.ids['wandb']['id']}.wandb").is_file()


def test_a_tracker_that_is_not_listed_says_nothing(tmp_path):
    assert finished(tmp_path, "tensorboard").where == []
