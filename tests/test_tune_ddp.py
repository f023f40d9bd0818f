"""DDP trials: torchrun --nproc_per_node=2 tune.py, gloo on CPU. Rank 0 talks to the study and
decides; rank 1 trains each trial with it and follows its pruning decision (else: a hang)."""
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from optuna.trial import TrialState

from tests.helpers.paths import REPO
from tests.helpers.torchrun import RUN_LIMIT, STANDALONE, finish, kill_worker_at, start, torchrun
from tests.helpers.tune_setup import ENV, load_study, tune_config, write


@pytest.mark.slow
def test_two_rank_trials_follow_rank_zero(tmp_path, synthetic_data_dir):
    config = tune_config(tmp_path, synthetic_data_dir, trainer={"epochs": 2},
                         space={"optimizer.args.lr": {"type": "categorical", "choices": [0.003, 10.0]}},
                         sampler={"type": "GridSampler", "args": {"seed": 0, "search_space": {
                             "optimizer.args.lr": [0.003, 10.0]}}},
                         pruner={"type": "ThresholdPruner", "args": {"upper": 1.5}})
    launched = subprocess.Popen(
        [sys.executable, *torchrun(*STANDALONE, "tune.py", "-c", str(write(tmp_path, config)))],
        cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = launched.communicate(timeout=120)
    except subprocess.TimeoutExpired:  # a rank that does not follow rank 0 hangs in a collective
        os.killpg(launched.pid, signal.SIGKILL)
        pytest.fail("torchrun tune.py hung: " + "".join(launched.communicate()[1])[-3000:])
    assert launched.returncode == 0, stdout[-2000:] + stderr[-3000:]
    trials = {t.params["optimizer.args.lr"]: t for t in load_study(config).trials}
    assert (trials[10.0].state, trials[10.0].user_attrs["epochs"]) == (TrialState.PRUNED, 1)
    assert (trials[0.003].state, trials[0.003].user_attrs["epochs"]) == (TrialState.COMPLETE, 2)
    assert stdout.count("Study s:") == 1  # rank 0 alone reports
    runs = sorted(p.name for p in (tmp_path / "saved" / "models" / "Mnist_LeNet").iterdir())
    assert runs == ["s-trial0", "s-trial1"]


@pytest.mark.slow
def test_trials_after_a_torchrun_restart_train_their_own_runs(tmp_path, synthetic_data_dir):
    config = tune_config(tmp_path, synthetic_data_dir, trainer={"epochs": 1}, trials=3)
    agent = start(torchrun("--standalone", "--nproc_per_node=2", "--max-restarts=1", "tune.py", "-c",
                           write(tmp_path, config)), REPO, log := tmp_path / "tune.log")
    deadline = time.monotonic() + 2 * RUN_LIMIT
    kill_worker_at([agent], [log], "[1/3] trial 0 ", rank=1, deadline=deadline)  # as trial 1 starts
    assert finish([agent], deadline) == [0], log.read_text()[-3000:]
    runs = tmp_path / "saved" / "models" / config["name"]
    for trial in load_study(config).trials:
        if trial.state == TrialState.COMPLETE:  # its value is its own run's, trained with its own lr
            latest = torch.load(runs / trial.user_attrs["run_id"] / "model_latest.pth", weights_only=True)
            assert latest["config"]["optimizer"]["args"]["lr"] == trial.params["optimizer.args.lr"], trial.number
