"""Issue 25's fault-injection search, on SQLite and on PostgreSQL: 4 trials, 2 workers, each worker
`torchrun --standalone --nproc_per_node=2 --max-restarts=1 tune.py -c cfg`. While they train, faults drawn from a
seeded random.Random (FAULT_SEED=N reproduces a run; every failure message names its seed), each at an event:
a whole worker SIGKILLed (agent and ranks) and one rank SIGKILLed, at a save in the middle of an epoch; the
database blinking at such a save (PostgreSQL: pg_ctl restart -m fast, and 3 s stopped; SQLite, which has no server
to restart: its file held by an exclusive lock for 3 s, the nearest thing); SIGTERM to a worker just after one of
its trials is told COMPLETE. Then the same commands again until both exit 0. What must hold: exactly 4 trials
COMPLETE (FAIL only as the record of a trial continued by its retry), one run folder per trial, no point evaluated
twice, and each trial's weights bitwise those of `torchrun train.py` on its config, uninterrupted."""
import os
import random
import time

import pytest
import torch
from optuna.trial import TrialState

from runs.files import LATEST, run_folder
from tests.helpers.configs import write_config
from tests.helpers.locks import sqlite_locked_for
from tests.helpers.paths import REPO
from tests.helpers.runs import same_weights, weights
from tests.helpers.search_faults import Workers, fault_plan, inject
from tests.helpers.skips import needs_postgresql
from tests.helpers.torchrun import STANDALONE, finish, start, torchrun
from tests.helpers.tune_setup import load_study, tune_config, write
from tests.synthetic_mnist import write_synthetic_mnist

TRIALS = 4
LRS = [round(0.001 * 1.15 ** k, 6) for k in range(32)]  # distinct points: a point seen twice is a trial run twice
ROUNDS = 6  # the first, with the faults, then the same commands until both exit 0
LIMIT = 600  # seconds for the whole search: past it, a worker hangs


def fault_study(tmp_path, storage):
    """A study of 4 trials of 2 epochs (112 steps each, model_latest.pth every 10) over 32 learning rates, one
    grid point per trial number (GridSampler: trial k gets point k of its shuffled grid, whoever asks), no pruner;
    heartbeat every second, stale after 2 s. Returns (config, its path)."""
    data = write_synthetic_mnist(tmp_path / "data", n_train=1000, n_test=10)
    config = tune_config(tmp_path, data, trainer={"epochs": 2, "checkpoint_interval": 10}, trials=TRIALS,
                         storage=storage, heartbeat_interval=1, grace_period=2, pruner=None,
                         space={"optimizer.args.lr": {"type": "categorical", "choices": LRS}},
                         sampler={"type": "GridSampler", "args": {"seed": 0,
                                                                  "search_space": {"optimizer.args.lr": LRS}}})
    config["data_loader"]["args"]["batch_size"] = 8  # 56 steps a rank an epoch
    return config, write(tmp_path, config)


def search_through_faults(tmp_path, config, path, blinks, blink):
    """Run the workers, with the faults in the first rounds, until a round ends with both exiting 0. Returns a
    summary of what was done (the seed first), for every assertion message."""
    seed = int(os.environ.get("FAULT_SEED", random.randrange(2 ** 32)))
    plan = fault_plan(random.Random(seed), blinks)
    story = [f"FAULT_SEED={seed}: {plan}"]
    print(story[0], flush=True)  # shown with any failure, a helper's own (a hang) included
    runs_dir = run_folder(config["trainer"]["save_dir"], config["name"], "")
    deadline, began = time.monotonic() + LIMIT, time.monotonic()
    for number in range(ROUNDS):
        workers = Workers(path, tmp_path, number)
        done, plan = inject(plan, workers, runs_dir, config, blink, deadline)
        codes = workers.wait(deadline)
        story.append(f"round {number}: {done or 'no fault'}; exit codes {codes} after {time.monotonic() - began:.0f} s")
        assert not workers.project_tracebacks(), "\n".join([*story, workers.tails()])  # each fault: its line
        if codes == [0, 0] and not plan:
            return "\n".join(story)
        if codes == [0, 0] and done == []:  # nothing left to train, so no event for the faults left
            pytest.fail("\n".join([*story, f"faults never injected: {plan}", workers.tails()]))
    pytest.fail("\n".join([*story, f"the workers did not both exit 0 in {ROUNDS} rounds", workers.tails()]))


def reference_runs(tmp_path, config, lrs):
    """{lr: run folder} of `torchrun --nproc_per_node=2 train.py` on the base config with each lr, uninterrupted,
    in a save_dir of their own; two at a time."""
    folders = {}
    for pair in (lrs[:2], lrs[2:]):
        agents = []
        for lr in pair:
            base = {k: v for k, v in config.items() if k != "tune"}
            base["optimizer"] = {**base["optimizer"], "args": {**base["optimizer"]["args"], "lr": lr}}
            base["trainer"] = {**base["trainer"], "save_dir": str(tmp_path / "reference")}
            cfg = write_config(tmp_path, base, f"reference-{lr}.json")
            agents.append(start(torchrun(*STANDALONE, "train.py", "-c", cfg, "--run_id", f"lr{lr}"), REPO,
                                tmp_path / f"reference-{lr}.log"))
            folders[lr] = run_folder(base["trainer"]["save_dir"], base["name"], f"lr{lr}")
        assert finish(agents, time.monotonic() + 300) == [0] * len(pair), [
            (tmp_path / f"reference-{lr}.log").read_text()[-2000:] for lr in pair]
    return folders


def check_study_agrees_with_runs(tmp_path, config, story):
    trials = load_study(config).trials
    final = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    states = [(t.number, t.state.name, t.user_attrs.get("run_id")) for t in trials]
    assert len(final) == TRIALS and all(t.state == TrialState.COMPLETE for t in final), f"{story}\n{states}"
    runs = [t.user_attrs["run_id"] for t in final]
    assert len(set(runs)) == TRIALS, f"{story}\n{states}"
    others = [t for t in trials if t not in final]
    # a FAIL is only the record of a killed or stopped attempt whose run a final trial continued
    assert all(t.state == TrialState.FAIL and t.user_attrs.get("run_id") in runs for t in others), f"{story}\n{states}"
    runs_dir = run_folder(config["trainer"]["save_dir"], config["name"], "")
    assert sorted(p.name for p in runs_dir.iterdir()) == sorted(runs), f"{story}\n{states}"
    lrs = [t.params["optimizer.args.lr"] for t in final]
    assert len(set(lrs)) == TRIALS, f"{story}: a point evaluated twice\n{states}"
    return final


def check_each_trial_is_its_uninterrupted_run(tmp_path, config, final, story):
    references = reference_runs(tmp_path, config, [t.params["optimizer.args.lr"] for t in final])
    runs_dir = run_folder(config["trainer"]["save_dir"], config["name"], "")
    for trial in final:
        reference = references[trial.params["optimizer.args.lr"]]
        ours = weights(runs_dir / trial.user_attrs["run_id"] / LATEST)
        assert same_weights(ours, weights(reference / LATEST)), f"{story}\ntrial {trial.number}'s weights differ"
        best = torch.load(reference / LATEST, weights_only=True)["monitor"]["best"]
        assert trial.value == best, f"{story}\ntrial {trial.number}: {trial.value} != {best} uninterrupted"


def faults_then_check(tmp_path, storage, blinks, blink):
    config, path = fault_study(tmp_path, storage)
    began = time.monotonic()
    story = search_through_faults(tmp_path, config, path, blinks, blink)
    final = check_study_agrees_with_runs(tmp_path, config, story)
    searched = time.monotonic() - began
    check_each_trial_is_its_uninterrupted_run(tmp_path, config, final, story)
    print(f"{story}\nsearch {searched:.0f} s, references {time.monotonic() - began - searched:.0f} s")


@pytest.mark.slow
def test_a_sqlite_search_through_faults(tmp_path):
    config_db = tmp_path / "saved" / "tune" / "s.db"
    faults_then_check(tmp_path, None, ["lock the database 3 s"], lambda kind: sqlite_locked_for(config_db, 3).wait())


@pytest.mark.slow
@needs_postgresql
def test_a_postgresql_search_through_faults(tmp_path, postgres):
    def blink(kind):
        postgres.restart() if kind == "restart the database" else postgres.stop_for(3)
    faults_then_check(tmp_path, postgres(), ["restart the database", "stop the database 3 s"], blink)
