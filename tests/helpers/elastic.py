"""What the elastic tests (test_elastic.py, test_run_ownership_torchrun.py) share: a config whose epoch 2 has an
interval checkpoint before the kill line, and the weights of an uninterrupted 2-rank run (the fixtures
elastic_setup and reference in tests/conftest.py, made once per module)."""
import time
from pathlib import Path

import pandas as pd
import torch

from tests.helpers.configs import shrink_config, write_config
from tests.helpers.paths import REPO
from tests.helpers.runs import run_dirs
from tests.helpers.torchrun import DDP_RUN, RUN_LIMIT, STANDALONE, finish, start, torchrun
from tests.synthetic_mnist import write_synthetic_mnist

KILL_AT = "Train Epoch: 2 [17/"  # mid epoch 2, after the interval checkpoint at its step 15


def elastic_config(tmp, **trainer):
    """(tmp, the config): 3 epochs of 57 steps per rank on 2 ranks, an interval checkpoint every 5 steps;
    `trainer` keys override (strategy="fsdp")."""
    data = write_synthetic_mnist(tmp / "data", n_train=1000, n_test=20)
    config = shrink_config(tmp, data, epochs=3, log_step=1, checkpoint_interval=5, verbosity=2, **trainer)
    config["data_loader"]["args"]["batch_size"] = 8  # 57 steps per epoch on each of 2 ranks
    return tmp, config


def final_weights(*save_dirs):
    """The state dict of the most advanced model_latest.pth under the given save_dirs."""
    found = [torch.load(p, weights_only=True) for d in save_dirs for p in Path(d).glob("models/*/*/model_latest.pth")]
    best = max(found, key=lambda c: (c["epoch"], c["global_step"]))
    assert best["epoch"] == 3
    return best["state_dict"]


def reference_weights(tmp, config):
    """The final weights of an uninterrupted 2-rank run."""
    cfg = {**config, "trainer": {**config["trainer"], "save_dir": str(tmp / "reference")}}
    log = tmp / "reference.log"
    agent = start(torchrun(*STANDALONE, "train.py", "-c", write_config(tmp, cfg, "ref.json")), REPO, log)
    assert finish([agent], time.monotonic() + RUN_LIMIT) == [0], log.read_text()[-3000:]
    return final_weights(tmp / "reference")


def start_evidence_job(root, config, log_name, *train_args, torchrun_args=()):
    """Start a 2-rank torchrun job (with `torchrun_args`) training `config` (saving under root/saved) with
    train.py's `train_args`, each rank leaving its final weights and optimizer state in root/evidence
    (tests/helpers/ddp_run.py --train), so a test compares what training ended with, whatever the checkpoint
    format. Returns (the agent, its log)."""
    (root / "evidence").mkdir(parents=True, exist_ok=True)
    cfg = write_config(root, {**config, "trainer": {**config["trainer"], "save_dir": str(root / "saved")}}, "run.json")
    log = root / log_name
    return start(torchrun(*STANDALONE, *torchrun_args, DDP_RUN, "--train", root / "evidence", "-c", cfg, *train_args),
                 REPO, log), log


def final_state(root):
    """What a finished evidence job (start_evidence_job) ended with: rank 0's whole weights and optimizer state
    (the ranks agree, checked here) and its metrics.csv without the timing columns."""
    ranks = [{part: torch.load(root / "evidence" / f"{part}_rank{rank}.pt", weights_only=True)
              for part in ("weights", "optimizer")} for rank in (0, 1)]
    assert all(torch.equal(ranks[0]["weights"][k], ranks[1]["weights"][k]) for k in ranks[0]["weights"])
    (run,) = run_dirs(root / "saved")
    metrics = pd.read_csv(run / "metrics.csv").drop(columns=["epoch_time", "samples_per_sec"])
    return {**ranks[0], "metrics": metrics}


def assert_ends_as(root, reference):
    """The evidence job in `root` ended with `reference`'s weights, optimizer state and metrics, bitwise."""
    ended = final_state(root)
    assert ended["weights"].keys() == reference["weights"].keys()
    for key, value in reference["weights"].items():
        assert torch.equal(value, ended["weights"][key]), key
    assert ended["optimizer"].keys() == reference["optimizer"].keys()
    for index, state in reference["optimizer"].items():
        for name, value in state.items():  # Adam's step, exp_avg, exp_avg_sq
            assert torch.equal(value, ended["optimizer"][index][name]), (index, name)
    # a stopped epoch's training metrics count the batches before the stop (restored) and after, as one epoch's
    pd.testing.assert_frame_equal(ended["metrics"], reference["metrics"], check_exact=True)
