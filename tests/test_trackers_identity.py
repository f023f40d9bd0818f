"""MLflow runs keyed by the run's identity (run.json's run_uid), retrained steps replacing their points, and the
store's creation lock beside the store. Read back from MLflow's own SQLite store."""
import fcntl
import json
import shutil
import threading

import pandas as pd
import pytest

from logger.trackers.mlflow_tracker import MlflowTracker
from logger.trackers.run_info import RunInfo
from logger.trackers.store_lock import store_lock_path
from tests.helpers.cli import train_in_process
from tests.helpers.configs import shrink_config, write_config
from tests.helpers.tracker_stores import mlflow_runs, newest_points, steps

pytest.importorskip("mlflow")


def test_a_run_folder_deleted_and_made_again_under_its_run_id_gets_new_tracker_runs(tmp_path, synthetic_data_dir):
    pytest.importorskip("wandb")
    cfg = write_config(tmp_path, shrink_config(tmp_path, synthetic_data_dir, epochs=1, trackers=["mlflow", "wandb"]))
    first = train_in_process("-c", cfg, "--run_id", "job")
    old_uid = json.loads((first.save_dir / "run.json").read_text())["run_uid"]
    old_wandb = json.loads((first.save_dir / "trackers.json").read_text())["wandb"]["id"]
    shutil.rmtree(first.save_dir)  # the user throws the run away and starts again under the same name
    again = train_in_process("-c", cfg, "--run_id", "job", "--lr", "0.01")
    assert again.save_dir == first.save_dir
    new_uid = json.loads((again.save_dir / "run.json").read_text())["run_uid"]
    assert new_uid != old_uid

    client, runs = mlflow_runs(tmp_path / "saved")
    assert sorted(r.data.tags["run_uid"] for r in runs) == sorted([old_uid, new_uid])
    (new,) = [r for r in runs if r.data.tags["run_uid"] == new_uid]
    ids = json.loads((again.save_dir / "trackers.json").read_text())
    assert ids["mlflow"]["run_id"] == new.info.run_id and ids["wandb"]["id"] != old_wandb
    assert new.data.params["optimizer.args.lr"] == "0.01"  # this run's config, not the deleted one's
    history = pd.read_csv(again.save_dir / "metrics.csv")
    assert newest_points(client, new.info.run_id, "loss/train") == pytest.approx({1: history["loss"][0]}, rel=1e-6)


def test_a_fine_tune_is_a_new_run_folder_and_new_tracker_runs(tmp_path, synthetic_data_dir):
    """-c with -r starts a new run from the checkpoint: its own MLflow run and W&B id, the first run's untouched."""
    pytest.importorskip("wandb")
    cfg = shrink_config(tmp_path, synthetic_data_dir, epochs=1, trackers=["mlflow", "wandb"])
    first = train_in_process("-c", write_config(tmp_path, cfg))
    cfg["trainer"]["epochs"] = 2  # one more epoch than the checkpoint's
    tuned = train_in_process("-c", write_config(tmp_path, cfg, "tune.json"), "-r", first.save_dir / "model_best.pth")
    assert tuned.save_dir != first.save_dir

    client, runs = mlflow_runs(tmp_path / "saved")
    by_folder = {r.data.tags["run_folder"]: r for r in runs}
    assert sorted(by_folder) == sorted(str(c.save_dir.absolute()) for c in (first, tuned))
    ids = [json.loads((c.save_dir / "trackers.json").read_text()) for c in (first, tuned)]
    assert [i["mlflow"]["run_id"] for i in ids] == [by_folder[str(c.save_dir.absolute())].info.run_id
                                                   for c in (first, tuned)]
    assert ids[0]["wandb"]["id"] != ids[1]["wandb"]["id"]
    assert [r.info.status for r in runs] == ["FINISHED", "FINISHED"]
    assert steps(client, by_folder[str(first.save_dir.absolute())].info.run_id, "loss/train") == [1]
    assert steps(client, by_folder[str(tuned.save_dir.absolute())].info.run_id, "loss/train") == \
        pd.read_csv(tuned.save_dir / "metrics.csv")["epoch"].tolist() == [2]


def tracked_run(tmp_path, run_uid, folder="saved/models/x/job"):
    """A RunInfo with no trackers.json: a run killed before it saved its MLflow run id is found by its identity."""
    return RunInfo("x", "job", tmp_path / folder, tmp_path / "log", {"lr": 1}, run_uid=run_uid)


def open_tracker(tmp_path, run, saved=None):
    tracker = MlflowTracker({})
    tracker.connect(tmp_path / "saved", "x")
    tracker.open(run, saved)
    return tracker


def test_the_mlflow_run_is_found_by_run_uid_not_by_folder(tmp_path):
    first = open_tracker(tmp_path, tracked_run(tmp_path, "uid-a"))
    first.finish("KILLED")
    assert open_tracker(tmp_path, tracked_run(tmp_path, "uid-a")).run_id == first.run_id  # the same run continued
    assert open_tracker(tmp_path, tracked_run(tmp_path, "uid-b")).run_id != first.run_id  # same folder, new run


def test_a_run_folder_made_before_run_uid_existed_is_found_by_its_folder(tmp_path):
    first = open_tracker(tmp_path, tracked_run(tmp_path, None))
    first.finish("KILLED")
    assert open_tracker(tmp_path, tracked_run(tmp_path, None)).run_id == first.run_id
    assert open_tracker(tmp_path, tracked_run(tmp_path, None, "saved/models/x/other")).run_id != first.run_id


def test_retrained_steps_replace_their_points_and_replayed_ones_are_not_stored_twice(tmp_path):
    run = tracked_run(tmp_path, "uid-a")
    first = open_tracker(tmp_path, run)
    for epoch, value in ((1, 0.9), (2, 0.5), (3, 0.4)):
        first.log_scalars({"loss/train": value}, epoch)
    first.finish("FINISHED")
    ids = {"run_id": first.run_id, "tracking_uri": first.uri}

    replay = open_tracker(tmp_path, run, ids)  # a resume after a kill: the same values at the same steps
    replay.log_scalars({"loss/train": 0.5}, 2)
    replay.log_scalars({"loss/train": 0.4}, 3)
    replay.finish("FINISHED")
    assert len(replay.client.get_metric_history(first.run_id, "loss/train")) == 3

    retrain = open_tracker(tmp_path, run, ids)  # -r of the epoch-1 checkpoint with another batch size
    retrain.log_scalars({"loss/train": 0.7}, 2)
    retrain.log_scalars({"loss/train": 0.6}, 3)
    retrain.finish("FINISHED")
    client = retrain.client
    assert newest_points(client, first.run_id, "loss/train") == {1: 0.9, 2: 0.7, 3: 0.6}
    assert client.get_run(first.run_id).data.metrics["loss/train"] == 0.6  # MLflow's value of the run


def test_infinite_and_nan_points_replayed_are_not_stored_twice(tmp_path):
    run = tracked_run(tmp_path, "uid-a")
    first = open_tracker(tmp_path, run)
    first.log_scalars({"a": float("inf"), "b": float("nan"), "c": -float("inf")}, 1)
    first.finish("FINISHED")
    again = open_tracker(tmp_path, run, {"run_id": first.run_id, "tracking_uri": first.uri})
    again.log_scalars({"a": float("inf"), "b": float("nan"), "c": -float("inf")}, 1)
    again.finish("FINISHED")
    assert [len(again.client.get_metric_history(first.run_id, key)) for key in "abc"] == [1, 1, 1]


@pytest.mark.parametrize("uri, lock", [("sqlite:////s/db/mlflow.db", "/s/db/mlflow.db.lock"),
                                       ("sqlite:////s/db/m.db?timeout=5", "/s/db/m.db.lock"),
                                       ("file:///s/mlruns", "/s/mlruns.lock"), ("/s/mlruns", "/s/mlruns.lock"),
                                       ("sqlite:///:memory:", None), ("sqlite://", None),
                                       ("http://host:5000", None), ("postgresql://u@h/db", None)])
def test_the_store_lock_sits_beside_the_store(uri, lock):
    found = store_lock_path(uri)
    assert (str(found) if found else None) == lock


def test_a_relative_sqlite_store_is_locked_beside_it_from_the_working_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert store_lock_path("sqlite:///stores/mlflow.db") == tmp_path / "stores" / "mlflow.db.lock"


def test_a_run_of_another_save_dir_waits_for_the_lock_beside_a_shared_store(tmp_path):
    """Two save_dirs, one store: a run must wait while another creates the store (the lock is the store's)."""
    store = tmp_path / "shared"
    store.mkdir()
    tracker = MlflowTracker({"tracking_uri": f"sqlite:///{store / 'mlflow.db'}"})
    with open(store / "mlflow.db.lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # another run creating the store
        connecting = threading.Thread(target=tracker.connect, args=(tmp_path / "save_b", "x"), daemon=True)
        connecting.start()
        connecting.join(timeout=2)
        assert connecting.is_alive() and not (store / "mlflow.db").exists()
        fcntl.flock(held, fcntl.LOCK_UN)
    connecting.join(timeout=60)
    assert not connecting.is_alive() and tracker.experiment_id is not None
    assert not (tmp_path / "save_b" / "mlflow.db.lock").exists()


def test_a_continued_run_that_lost_its_trackers_json_finds_its_mlflow_run_by_run_uid(tmp_path, synthetic_data_dir):
    """Killed between creating its MLflow run and saving the id: run.json's run_uid, kept across starts, finds it."""
    cfg = write_config(tmp_path, shrink_config(tmp_path, synthetic_data_dir, epochs=1, trackers=["mlflow"]))
    first = train_in_process("-c", cfg, "--run_id", "job")
    (first.save_dir / "trackers.json").unlink()
    train_in_process("-r", first.save_dir / "model_latest.pth", "-o", "trainer.epochs=2")
    client, (run,) = mlflow_runs(tmp_path / "saved")
    assert run.data.tags["run_uid"] == json.loads((first.save_dir / "run.json").read_text())["run_uid"]
    assert sorted(newest_points(client, run.info.run_id, "loss/train")) == [1, 2]
