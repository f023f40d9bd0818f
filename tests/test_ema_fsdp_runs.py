"""trainer.ema with trainer.strategy "fsdp": whole runs at 2 torchrun ranks (gloo) against the same run under
DDP, a stop and resume, validation on the average and test.py on the checkpoint."""
import json
import re
import time

import pandas as pd
import pytest
import torch

import test as test_entry
import train
from runs.checkpoint_file import load_checkpoint
from runs.files import SHARDS
from tests.helpers.configs import write_config
from tests.helpers.exact_resume import assert_identical
from tests.helpers.paths import REPO
from tests.helpers.runs import run_dirs
from tests.helpers.strategy_runs import launch, resume_copy
from tests.helpers.torchrun import RUN_LIMIT, finish, kill_worker_at, start, torchrun
from trainer.evaluation import evaluate

pytestmark = pytest.mark.slow
EMA = {"decay": 0.9, "every": 2, "start": 1}
STEPS = 36  # 2 epochs of 18 steps: 567 training samples, batches of 16 at 2 ranks


@pytest.fixture(scope="module")
def runs(tmp_path_factory, synthetic_data_dir):
    """FSDP validating on the average, DDP validating on the raw weights, and FSDP stopped after epoch 1."""
    root = tmp_path_factory.mktemp("ema_strategies")
    return {"fsdp": launch(root / "fsdp", synthetic_data_dir, "fsdp", ema={**EMA, "validate": True}),
            "ddp": launch(root / "ddp", synthetic_data_dir, "ddp", ema=EMA),
            "stopped": launch(root / "stopped", synthetic_data_dir, "fsdp", epochs=1, ema={**EMA, "validate": True})}


def latest(run):
    """model_latest.pth in the single-file format (an FSDP run's is sharded: read whole in this process)."""
    return load_checkpoint(run["run"] / "model_latest.pth")


def test_the_fsdp_average_equals_the_ddp_average_bitwise(runs):
    fsdp, ddp = latest(runs["fsdp"]), latest(runs["ddp"])
    assert fsdp["ema"]["n_averaged"] == ddp["ema"]["n_averaged"] == (STEPS - EMA["start"]) // EMA["every"]
    assert fsdp["ema"]["steps"] == ddp["ema"]["steps"] == STEPS
    assert_identical(fsdp["ema"]["weights"], ddp["ema"]["weights"], "ema.weights")
    # validating on the average swapped the raw weights out and back: training went on exactly as DDP's
    assert_identical(fsdp["state_dict"], ddp["state_dict"], "state_dict")
    assert not torch.equal(fsdp["ema"]["weights"]["fc2.weight"], fsdp["state_dict"]["fc2.weight"])


def test_fsdp_validates_on_the_average_when_configured(runs):
    fsdp, ddp = (pd.read_csv(runs[name]["run"] / "metrics.csv") for name in ("fsdp", "ddp"))
    assert list(fsdp["val_on_ema"]) == [1, 1] and list(ddp["val_on_ema"]) == [0, 0]
    assert (fsdp["val_loss"] - ddp["val_loss"]).abs().min() > 1e-6  # the same raw weights, measured otherwise
    # the last epoch's val_loss is the saved average's, measured on the whole split in one process
    run = runs["fsdp"]["run"]
    trainer = train.build_trainer(train.parse_args(["-c", str(run / "config.json")]))
    trainer.raw_model.load_state_dict(latest(runs["fsdp"])["ema"]["weights"])
    trainer.raw_model.eval()
    one_process = evaluate(trainer.raw_model, trainer.valid_data_loader, trainer.criterion, trainer.metric_ftns,
                           trainer.device).result()
    assert fsdp["val_loss"].iloc[-1] == pytest.approx(one_process["loss"], rel=1e-6)


def test_a_stop_and_resume_under_fsdp_continues_the_average_and_the_weights_bitwise(runs, tmp_path):
    stopped = latest(runs["stopped"])
    assert (stopped["epoch"], stopped["ema"]["steps"], stopped["ema"]["n_averaged"]) == (1, 18, 8)
    resumed = resume_copy(runs["stopped"]["run"], tmp_path / "resumed", "fsdp", epochs=2)
    unstopped = latest(runs["fsdp"])
    for key in ("epoch", "global_step", "state_dict", "optimizer", "ema"):
        assert_identical(resumed[key], unstopped[key], key)
    val_columns = pd.read_csv(tmp_path / "resumed" / "metrics.csv").filter(like="val_")
    pd.testing.assert_frame_equal(val_columns, pd.read_csv(runs["fsdp"]["run"] / "metrics.csv").filter(like="val_"))


def test_a_worker_killed_mid_epoch_is_restarted_and_the_average_ends_bitwise(runs, tmp_path):
    """SIGKILL of rank 1 in epoch 2, after the interval checkpoint at its step 10: torchrun restarts the group,
    which continues the run from that checkpoint (raw weights, average and its counts)."""
    config = json.loads((runs["fsdp"]["evidence"].parent / "config.json").read_text())  # the unkilled run's
    config["trainer"].update(save_dir=str(tmp_path / "saved"), checkpoint_interval=5, log_step=1)
    log, deadline = tmp_path / "torchrun.log", time.monotonic() + 2 * RUN_LIMIT
    agent = start(torchrun("--standalone", "--nproc_per_node=2", "--max-restarts=1", "train.py", "-c",
                           write_config(tmp_path, config)), REPO, log)
    kill_worker_at([agent], [log], "Train Epoch: 2 [13/", rank=1, deadline=deadline)
    assert finish([agent], deadline) == [0], log.read_text()[-3000:]

    info = next((tmp_path / "saved" / "log").glob("*/*/info.log")).read_text()
    assert re.search(r"\(torchrun restart 1\)\. Resume training from epoch 2, batch 11", info), info[-2000:]
    (run,) = run_dirs(tmp_path / "saved")
    killed, unkilled = load_checkpoint(run / "model_latest.pth"), latest(runs["fsdp"])
    for key in ("epoch", "global_step", "state_dict", "optimizer", "ema"):
        assert_identical(killed[key], unkilled[key], key)


def test_py_on_the_fsdp_checkpoint_evaluates_the_average(runs, tmp_path):
    run = runs["fsdp"]["run"]
    under_torchrun = runs["fsdp"]["test"]  # test.py at 2 ranks, after training
    assert under_torchrun["weights"].startswith("ema (decay 0.9")
    test_entry.main(test_entry.parse_args(["-r", str(run / "model_best.pth")]))
    one_process = json.loads((run / "model_best.test.json").read_text())
    # the single-process path on the average alone, as a plain checkpoint
    best = {k: v for k, v in load_checkpoint(run / "model_best.pth").items() if k != SHARDS}
    torch.save({**best, "state_dict": best["ema"]["weights"], "ema": None}, tmp_path / "average_alone.pth")
    test_entry.main(test_entry.parse_args(["-r", str(tmp_path / "average_alone.pth")]))
    alone = json.loads((tmp_path / "average_alone.test.json").read_text())
    assert one_process["weights"] == under_torchrun["weights"] and one_process["n_samples"] == 200
    assert one_process["metrics"] == alone["metrics"]
    for name, value in one_process["metrics"].items():
        assert value == pytest.approx(under_torchrun["metrics"][name], abs=1e-6), name
