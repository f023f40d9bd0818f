"""Training features under trainer.strategy "fsdp" as under DDP (issue 26): torch.compile, a tune.py search, and
a bf16 run stopped after epoch 1, SIGTERMed mid-epoch 2 through its torchrun agent and run again with its
--run_id, tracked in MLflow. Real torchrun at 2 gloo ranks, each launch showing as much as it can: 8 in all.

What the ranks ended with comes from tests/helpers/ddp_run.py's evidence (weights, optimizer state, exit codes,
the compiled graphs), not from a checkpoint read back, so a wrong save and a wrong load both show."""
import json
import re
import signal
import time

import pandas as pd
import pytest
import torch
from optuna.trial import TrialState

from runs.checkpoint_file import load_checkpoint
from tests.helpers.elastic import assert_ends_as, elastic_config, final_state, start_evidence_job
from tests.helpers.runs import run_dirs
from tests.helpers.strategy_runs import launch
from tests.helpers.torchrun import RUN_LIMIT, STANDALONE, finish, run_torchrun, signal_job_at
from tests.helpers.tracker_stores import mlflow_runs, newest_points, steps
from tests.helpers.tune_setup import load_study, write

pytestmark = pytest.mark.slow

FSDP_LIMIT = 2 * RUN_LIMIT  # an FSDP step all-gathers and reduce-scatters each unit: slower than DDP's
NO_DROPOUT = {"dropout": 0.0}  # compiled kernels draw other random masks than eager ones: without any, runs compare
STEPS_PER_EPOCH = 57  # elastic_config: 900 training samples in batches of 8 on each of 2 ranks


@pytest.fixture(scope="module")
def eager(tmp_path_factory, synthetic_data_dir):
    """An FSDP run without dropout (train.py, then test.py): what the compiled run and the search compare with."""
    return launch(tmp_path_factory.mktemp("eager") / "run", synthetic_data_dir, "fsdp", arch=NO_DROPOUT)


def ranks_evidence(evidence, name):
    return [json.loads((evidence / f"{name}_rank{rank}.json").read_text()) for rank in (0, 1)]


def test_compiled_fsdp_run_ends_within_1e6_of_the_eager_one(eager, tmp_path, synthetic_data_dir):
    compiled = launch(tmp_path / "compiled", synthetic_data_dir, "fsdp", arch=NO_DROPOUT, compile=True)
    # torch.compile wrapped the sharded model on both ranks and captured graphs; the eager run compiled nothing
    assert all(r["class"] == "OptimizedModule" and r["compiled_graphs"] >= 1
               for r in ranks_evidence(compiled["evidence"], "model"))
    assert all(r["compiled_graphs"] == 0 for r in ranks_evidence(eager["evidence"], "model"))
    plain = load_checkpoint(eager["run"] / "model_latest.pth")["state_dict"]
    fused = load_checkpoint(compiled["run"] / "model_latest.pth")["state_dict"]
    assert list(fused) == list(plain)  # plain keys: no `_orig_mod.` from the compiled wrapper
    # inductor's fused kernels round otherwise than eager ones: 2.5e-7 apart after 36 steps here, not bitwise
    for key, value in plain.items():
        assert torch.allclose(value, fused[key], rtol=0, atol=1e-6), key


def test_a_search_trial_under_fsdp_scores_what_train_py_scores(eager, tmp_path):
    config = json.loads((eager["run"] / "config.json").read_text())  # the eager run's own, trainer.strategy fsdp
    lr = config["optimizer"]["args"]["lr"]
    config["trainer"]["save_dir"] = str(tmp_path / "saved")
    config["tune"] = {"study": "s", "trials": 2, "space": {"optimizer.args.lr": {"type": "categorical",
                                                                                  "choices": [lr, 3 * lr]}},
                      "sampler": {"type": "GridSampler", "args": {"seed": 0, "search_space": {
                          "optimizer.args.lr": [lr, 3 * lr]}}}}
    launched = run_torchrun(*STANDALONE, "tune.py", "-c", write(tmp_path, config), timeout=FSDP_LIMIT)
    assert launched.returncode == 0, launched.stdout[-2000:] + launched.stderr[-3000:]
    trials = {t.params["optimizer.args.lr"]: t for t in load_study(config).trials}
    assert sorted(trials) == [lr, 3 * lr] and {t.state for t in trials.values()} == {TrialState.COMPLETE}
    for trial in trials.values():  # each trial's run saved shards at 2 ranks, a folder per save
        run = tmp_path / "saved" / "models" / config["name"] / trial.user_attrs["run_id"]
        latest = torch.load(run / "model_latest.pth", weights_only=True)
        assert latest["world_size"] == 2 and latest["config"]["optimizer"]["args"]["lr"] == trial.params[
            "optimizer.args.lr"]
        shards = run / latest["shards"]["folder"]
        assert sorted(p.name for p in shards.iterdir()) == [".metadata", "__0_0.distcp", "__1_0.distcp"]
        assert len(list((run / "shards").iterdir())) == 2  # epoch 1's and epoch 2's
    # the trial with the eager run's config trained what train.py trained: the same best val_loss, to the bit
    best = torch.load(eager["run"] / "model_latest.pth", weights_only=True)["monitor"]["best"]
    assert trials[lr].value == best
    assert trials[3 * lr].value != best


def test_bf16_fsdp_stopped_by_sigterm_and_run_again_ends_bitwise_as_the_unstopped_run(tmp_path):
    _, config = elastic_config(tmp_path, strategy="fsdp", amp="bf16", trackers=["mlflow"])
    config["trainer"]["epochs"] = 2
    del config["trainer"]["checkpoint_interval"]  # the stop's own save is the one resumed from
    agent, log = start_evidence_job(tmp_path / "reference", config, "reference.log")
    assert finish([agent], time.monotonic() + FSDP_LIMIT) == [0], log.read_text()[-3000:]
    reference = final_state(tmp_path / "reference")

    job, named = tmp_path / "job", ("--run_id", "job")
    deadline = time.monotonic() + 3 * FSDP_LIMIT
    agent, log = start_evidence_job(job, config, "epoch1.log", *named, "-o", "trainer.epochs=1")
    assert finish([agent], deadline) == [0], log.read_text()[-3000:]
    assert "Training finished after epoch 1." in log.read_text()

    agent, log = start_evidence_job(job, config, "stopped.log", *named)
    signal_job_at(agent, log, "Train Epoch: 2 [10/", signal.SIGTERM, deadline)
    assert finish([agent], deadline) == [1], log.read_text()[-3000:]  # torchrun's own: its SignalException
    assert exit_codes(job) == ["143", "143"]  # each rank saved, then exited as after a SIGTERM
    stopped = re.search(r"Stopped by SIGTERM in epoch 2 after (\d+) batches; state saved", log.read_text())
    assert stopped, log.read_text()[-3000:]
    done = int(stopped[1])
    (run,) = run_dirs(job / "saved")
    latest = torch.load(run / "model_latest.pth", weights_only=True)
    assert (latest["epoch"], latest["global_step"]) == (1, STEPS_PER_EPOCH + done)  # the position mid-epoch 2
    assert sorted(p.name for p in (run / latest["shards"]["folder"]).iterdir()) == [
        ".metadata", "__0_0.distcp", "__1_0.distcp"]

    agent, log = start_evidence_job(job, config, "again.log", *named)  # the same command: a requeued job
    assert finish([agent], deadline) == [0], log.read_text()[-3000:]
    assert f"Resume training from epoch 2, batch {done + 1}\n" in log.read_text(), log.read_text()[-3000:]
    assert exit_codes(job) == ["0", "0"]
    assert_ends_as(job, reference)
    assert_one_mlflow_run_of_each_epoch(job / "saved", run)
    logs = ("epoch1.log", "stopped.log", "again.log")
    assert not [name for name in logs if "Warning: tracker" in (job / name).read_text()]


def exit_codes(root):
    return [(root / "evidence" / f"exit_rank{rank}.txt").read_text() for rank in (0, 1)]


def assert_one_mlflow_run_of_each_epoch(save_dir, run):
    """Rank 0 alone tracked the run, over its three jobs: one MLflow run, each epoch's metrics once."""
    client, runs = mlflow_runs(save_dir)
    assert len(runs) == 1, [r.data.tags for r in runs]
    (tracked,) = runs
    assert tracked.info.status == "FINISHED" and tracked.data.tags["world_size"] == "2"
    assert (tracked.data.params["trainer.strategy"], tracked.data.params["trainer.amp"]) == ("fsdp", "bf16")
    # each rank's batch loss is its own: a second rank tracking would put a second point at these steps
    assert steps(client, tracked.info.run_id, "loss/step") == list(range(1, 2 * STEPS_PER_EPOCH + 1))
    metrics = pd.read_csv(run / "metrics.csv")
    for key, column in (("loss/train", "loss"), ("loss/valid", "val_loss"), ("accuracy/valid", "val_accuracy")):
        assert steps(client, tracked.info.run_id, key) == [1, 2], key  # no epoch twice, none left out
        assert list(newest_points(client, tracked.info.run_id, key).values()) == pytest.approx(
            metrics[column].tolist(), rel=1e-6), key
