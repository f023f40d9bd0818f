"""One tracker run per run, however the run is stopped and continued: SIGTERM then -r, a SIGKILLed
--run_id job resubmitted, a worker killed under `torchrun --max-restarts`; and 4 runs started at
the same instant on a new MLflow store. Read back from MLflow's store and W&B's offline files;
every process is bounded in time."""
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from tests.helpers.configs import shrink_config, write_config
from tests.helpers.paths import REPO
from tests.helpers.runs import run_dirs
from tests.helpers.torchrun import finish, kill_worker_at, start, torchrun
from tests.helpers.tracker_stores import mlflow_runs, steps, wandb_segments
from tests.synthetic_mnist import write_synthetic_mnist

pytest.importorskip("mlflow")
pytest.importorskip("wandb")
pytestmark = pytest.mark.slow
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
BATCHES = 68  # per epoch: 540 training samples in batches of 8
LIMIT = 120  # seconds for any one process


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_synthetic_mnist(tmp_path_factory.mktemp("trackers") / "data", n_train=600, n_test=10)


def small_batches(tmp_path, data_dir, **trainer):
    cfg = shrink_config(tmp_path, data_dir, log_step=1, checkpoint_interval=10, **trainer)
    cfg["data_loader"]["args"]["batch_size"] = 8
    return write_config(tmp_path, cfg)


def run_until(argv, line, signum, log):
    """Start train.py, send `signum` once `line` is printed; return the exit code."""
    process = subprocess.Popen([sys.executable, "train.py", *map(str, argv)], cwd=REPO, env=ENV,
                               stdout=log.open("w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + LIMIT
    while line not in log.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"{line!r} never appeared:\n{log.read_text()[-2000:]}")
        time.sleep(0.05)
    process.send_signal(signum)
    return process.wait(timeout=LIMIT)


def run_to_end(argv, log):
    done = subprocess.run([sys.executable, "train.py", *map(str, argv)], cwd=REPO, env=ENV, text=True,
                          stdout=log.open("w"), stderr=subprocess.STDOUT, timeout=LIMIT)
    assert done.returncode == 0, log.read_text()[-3000:]
    assert "Warning: tracker" not in log.read_text()


def test_sigterm_then_resume_continues_the_same_mlflow_and_wandb_run(tmp_path, data_dir):
    cfg = small_batches(tmp_path, data_dir, trackers=["mlflow", "wandb"])
    assert run_until(["-c", cfg], "Train Epoch: 2 [5/", signal.SIGTERM, tmp_path / "first.log") == 143
    client, (run,) = mlflow_runs(tmp_path / "saved")
    assert run.info.status == "KILLED"
    (folder,) = run_dirs(tmp_path / "saved")
    run_to_end(["-r", folder / "model_latest.pth"], tmp_path / "resumed.log")

    client, (run,) = mlflow_runs(tmp_path / "saved")
    assert run.info.status == "FINISHED"
    assert steps(client, run.info.run_id, "loss/step") == list(range(1, 2 * BATCHES + 1))  # each step once
    assert steps(client, run.info.run_id, "loss/train") == [1, 2]
    segments = wandb_segments(tmp_path / "saved" / "log" / "Mnist_LeNet" / folder.name)
    assert len(segments) == 2 and len({run_id for run_id, _, _ in segments}) == 1
    assert [code for _, _, code in segments] == [143, 0]
    logged = [int(row["_step"]) for _, rows, _ in segments for row in rows]
    assert logged == sorted(set(logged)) and logged[-1] == 2 * BATCHES  # one W&B history, steps only grow


KILL_AFTER_COMMIT = r"""
import os, runpy, signal, sys
from runs.checkpointer import Checkpointer

real_write, kill_at = Checkpointer.write, (int(sys.argv[1]) - 1, int(sys.argv[2]))

def save_then_die(self, state, *args, **kwargs):
    real_write(self, state, *args, **kwargs)
    # a position in epoch N has "epoch": N - 1; the checkpoint is on disk now, the process is not
    if (state["epoch"], state.get("resume_batch")) == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)

Checkpointer.write = save_then_die
sys.argv = ["train.py", *sys.argv[3:]]
runpy.run_path("train.py", run_name="__main__")
"""


def killed_after_interval_checkpoint(argv, epoch, batch, log):
    """train.py, SIGKILLed the moment its checkpoint after `batch` of `epoch` is committed: the worst
    instant for a tracker that buffers steps."""
    done = subprocess.run([sys.executable, "-c", KILL_AFTER_COMMIT, str(epoch), str(batch), *map(str, argv)], cwd=REPO,
                          env=ENV, stdout=log.open("w"), stderr=subprocess.STDOUT, timeout=LIMIT)
    assert done.returncode == -signal.SIGKILL, log.read_text()[-3000:]


@pytest.mark.parametrize("batch, resumed", [(20, "epoch 2, batch 21\n"), (0, "epoch 2\n")],
                         ids=["mid-epoch checkpoint", "epoch checkpoint"])
def test_a_killed_and_resubmitted_run_id_job_continues_the_same_mlflow_run(tmp_path, data_dir, batch, resumed):
    cfg = small_batches(tmp_path, data_dir, trackers=["mlflow"])
    argv = ["-c", cfg, "--run_id", "job"]
    killed_after_interval_checkpoint(argv, 2, batch, tmp_path / "first.log")  # batch 0 of 2: the end of 1
    client, (run,) = mlflow_runs(tmp_path / "saved")
    assert run.info.status == "RUNNING"  # as it happened: nothing could record a SIGKILL
    assert steps(client, run.info.run_id, "loss/step")[-1] == BATCHES + batch  # flushed before the commit
    run_to_end(argv, tmp_path / "again.log")
    assert "Resume training from " + resumed in (tmp_path / "again.log").read_text()

    client, (run,) = mlflow_runs(tmp_path / "saved")
    assert run.info.status == "FINISHED" and run.data.tags["run_id"] == "job"
    assert steps(client, run.info.run_id, "loss/step") == list(range(1, 2 * BATCHES + 1))  # each step once


def test_steps_mlflow_already_has_are_not_logged_again_when_a_resume_replays_them(tmp_path, data_dir):
    """Batches of 2, no interval checkpoint: MLflow gets a batch of points every 200 steps (mlflow_tracker's
    FLUSH_EVERY), so the job killed at step 500 has steps 271-470 in MLflow that its resume from the epoch-1
    checkpoint (step 270) trains again."""
    cfg = shrink_config(tmp_path, data_dir, log_step=1, trackers=["mlflow"])
    cfg["data_loader"]["args"]["batch_size"] = 2  # 270 steps per epoch
    argv = ["-c", write_config(tmp_path, cfg), "--run_id", "job"]
    run_until(argv, "Train Epoch: 2 [230/", signal.SIGKILL, tmp_path / "first.log")
    client, (run,) = mlflow_runs(tmp_path / "saved")
    assert steps(client, run.info.run_id, "loss/step")[-1] == 470
    run_to_end(argv, tmp_path / "again.log")
    assert "Resume training from epoch 2\n" in (tmp_path / "again.log").read_text()
    client, (run,) = mlflow_runs(tmp_path / "saved")
    assert steps(client, run.info.run_id, "loss/step") == list(range(1, 541))


def test_a_worker_killed_under_torchrun_restart_continues_the_same_mlflow_run(tmp_path, data_dir):
    cfg = small_batches(tmp_path, data_dir, trackers=["mlflow"], epochs=2)
    log = tmp_path / "torchrun.log"
    deadline = time.monotonic() + 3 * LIMIT
    agent = start(torchrun("--standalone", "--nproc_per_node=2", "--max-restarts=1", "train.py", "-c", cfg), REPO, log)
    kill_worker_at([agent], [log], "Train Epoch: 2 [15/", rank=1, deadline=deadline)
    assert finish([agent], deadline) == [0], log.read_text()[-3000:]
    assert "torchrun restart 1" in log.read_text()

    client, runs = mlflow_runs(tmp_path / "saved")
    assert len(runs) == 1, [r.data.tags for r in runs]  # rank 0 only, and the restart reopened it
    (run,) = runs
    assert run.info.status == "FINISHED" and run.data.tags["world_size"] == "2"
    per_rank = BATCHES // 2  # the sampler splits each epoch between the 2 ranks
    assert steps(client, run.info.run_id, "loss/step") == list(range(1, 2 * per_rank + 1))


def test_four_runs_started_at_once_on_a_new_mlflow_store_all_succeed(tmp_path, data_dir):
    cfg = write_config(tmp_path, shrink_config(tmp_path, data_dir, epochs=1, trackers=["mlflow"]))
    logs = [tmp_path / f"run{i}.log" for i in range(4)]
    processes = [subprocess.Popen([sys.executable, "train.py", "-c", str(cfg)], cwd=REPO, env=ENV,
                                  stdout=log.open("w"), stderr=subprocess.STDOUT) for log in logs]
    codes = [p.wait(timeout=3 * LIMIT) for p in processes]
    assert codes == [0, 0, 0, 0], [log.read_text()[-1500:] for log in logs]
    for log in logs:
        assert "Warning: tracker" not in log.read_text(), log.read_text()[-1500:]
    client, runs = mlflow_runs(tmp_path / "saved")
    assert len(runs) == 4 and {r.info.status for r in runs} == {"FINISHED"}
    assert {r.data.tags["run_folder"] for r in runs} == {str(p.absolute()) for p in run_dirs(tmp_path / "saved")}
    assert all(steps(client, r.info.run_id, "loss/train") == [1] for r in runs)


def alembic_revision(database):
    with sqlite3.connect(database) as store:
        assert store.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        return store.execute("SELECT version_num FROM alembic_version").fetchall()


def test_four_runs_of_different_save_dirs_started_at_once_on_one_new_sqlite_store_are_all_tracked(tmp_path, data_dir):
    """The store's creation lock sits beside the database: runs whose save_dirs differ still take the same lock."""
    from mlflow.tracking import MlflowClient
    store = tmp_path / "shared" / "mlflow.db"
    store.parent.mkdir()
    tracker = {"type": "mlflow", "args": {"tracking_uri": f"sqlite:///{store}"}}
    processes, logs = [], []
    for i in range(4):  # each run in its own save_dir (saved<i>/), all on the one store
        cfg = write_config(tmp_path, shrink_config(tmp_path / f"save{i}", data_dir, epochs=1, trackers=[tracker]),
                           f"run{i}.json")
        logs.append(tmp_path / f"run{i}.log")
        processes.append(subprocess.Popen([sys.executable, "train.py", "-c", str(cfg)], cwd=REPO, env=ENV,
                                          stdout=logs[-1].open("w"), stderr=subprocess.STDOUT))
    codes = [p.wait(timeout=3 * LIMIT) for p in processes]
    assert codes == [0, 0, 0, 0], [log.read_text()[-1500:] for log in logs]
    for log in logs:
        assert "Warning: tracker" not in log.read_text(), log.read_text()[-1500:]

    client = MlflowClient(tracking_uri=f"sqlite:///{store}")
    runs = client.search_runs([client.get_experiment_by_name("Mnist_LeNet").experiment_id])
    assert len(runs) == 4 and {r.info.status for r in runs} == {"FINISHED"}
    assert all(steps(client, r.info.run_id, "loss/train") == [1] for r in runs)
    MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'alone.db'}").search_experiments()  # a store made by one run
    assert alembic_revision(store) == alembic_revision(tmp_path / "alone.db")  # fully migrated, once
