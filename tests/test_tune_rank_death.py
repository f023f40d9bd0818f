"""A DDP trial whose rank dies (issue 25, case 1): torchrun tune.py with 2 ranks, one rank SIGKILLed once the
trial's first checkpoint is saved. Either rank's death leaves the trial continuable: the group torchrun restarts
(--max-restarts=1), or the same command run again, continues that trial's run to the end, with one run folder,
and the study's value and the weights of an uninterrupted trial. A full disk under torchrun ends the job instead
(a restart would fail the same way): the same command, once space is freed, finishes the trial alike. A trial
another worker revives while the group trains it is left by both ranks alike, and its retry finishes the run."""
import shutil
import time

import pytest
from optuna.trial import TrialState

from search.claim import fail_if_running
from search.recovery import KILLS, retry_after_kill
from tests.helpers.paths import REPO
from tests.helpers.runs import same_weights, weights
from tests.helpers.tmpfs import tmpfs
from tests.helpers.torchrun import RUN_LIMIT, finish, kill_worker_after, start, torchrun
from tests.helpers.tune_setup import load_study, tune_config, write
from tests.synthetic_mnist import write_synthetic_mnist

ONE_POINT = {"optimizer.args.lr": {"type": "categorical", "choices": [0.002]}}


def a_config(folder, study):
    data = write_synthetic_mnist(folder / "data", n_train=1200, n_test=10)
    config = tune_config(folder, data, space=ONE_POINT, trainer={"epochs": 3}, trials=1, study=study)
    config["data_loader"]["args"]["batch_size"] = 4  # ~130 batches a rank an epoch: time to kill inside one
    return config


def two_rank_tune(folder, config, *flags, log_name="tune.log"):
    argv = torchrun("--standalone", "--nproc_per_node=2", *flags, "tune.py", "-c", write(folder, config))
    return start(argv, REPO, folder / log_name)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The trial trained by 2 ranks without a fault: (its study value, its run folder)."""
    folder = tmp_path_factory.mktemp("uninterrupted")
    config = a_config(folder, "ref")
    assert finish([two_rank_tune(folder, config)], time.monotonic() + RUN_LIMIT) == [0], \
        (folder / "tune.log").read_text()[-3000:]
    return load_study(config).best_value, folder / "saved" / "models" / config["name"] / "ref-trial0"


@pytest.mark.slow
@pytest.mark.parametrize("rank, restarts", [(1, 1), (0, 0)], ids=["rank1-torchrun-restarts", "rank0-run-again"])
def test_a_dead_rank_leaves_its_trial_continuable(tmp_path, uninterrupted, rank, restarts):
    config = a_config(tmp_path, "s")
    runs = tmp_path / "saved" / "models" / config["name"]
    log = tmp_path / "tune.log"
    deadline = time.monotonic() + 2 * RUN_LIMIT
    agent = two_rank_tune(tmp_path, config, f"--max-restarts={restarts}")
    kill_worker_after([agent], runs / "s-trial0" / "checkpoint-epoch1.pth", rank=rank, deadline=deadline)
    if not restarts:  # the job ends; the same command continues the trial
        assert finish([agent], deadline) != [0]
        agent = two_rank_tune(tmp_path, config, f"--max-restarts={restarts}", log_name="again.log")
        log = tmp_path / "again.log"
    assert finish([agent], deadline) == [0], log.read_text()[-4000:]

    trials = load_study(config).trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE], log.read_text()[-4000:]
    assert {t.user_attrs["run_id"] for t in trials} == {"s-trial0"}
    assert [p.name for p in runs.iterdir()] == ["s-trial0"]
    text = log.read_text()  # the agent's SIGTERM to the live rank may come before its collective breaks off
    assert "trial 0: its worker is gone; queued again" in text or "trial 0 stopped; its run's state is saved" in text
    assert "Resume training from epoch 2" in text
    value, reference = uninterrupted
    assert trials[-1].value == value
    for name in ("model_latest.pth", "model_best.pth"):
        assert same_weights(weights(runs / "s-trial0" / name), weights(reference / name)), name


LEFT_FREE = 300_000  # bytes: the study's SQLite file and the logs still grow, an epoch's checkpoints (~1 MB) do not


def fill_when_saved(agent, checkpoint, disk, deadline):
    """Once `checkpoint` exists, fill `disk` up to LEFT_FREE bytes; the ballast file to free it."""
    while not checkpoint.exists():
        assert agent.poll() is None and time.monotonic() < deadline, "the trial ended before its first checkpoint"
        time.sleep(0.05)
    ballast = disk / "ballast"
    ballast.write_bytes(b"\0" * (shutil.disk_usage(disk).free - LEFT_FREE))
    return ballast


@pytest.mark.slow
def test_a_full_disk_under_torchrun_ends_the_job_and_the_same_command_finishes_the_trial(tmp_path, uninterrupted):
    config = a_config(tmp_path, "s")
    deadline = time.monotonic() + 3 * RUN_LIMIT
    with tmpfs(tmp_path / "small", "8m") as disk:
        config["trainer"]["save_dir"] = str(disk / "saved")  # the study's default SQLite file is there too
        runs = disk / "saved" / "models" / config["name"]
        agent = two_rank_tune(tmp_path, config, "--max-restarts=1")
        ballast = fill_when_saved(agent, runs / "s-trial0" / "checkpoint-epoch1.pth", disk, deadline)
        assert finish([agent], deadline) != [0]
        text = (tmp_path / "tune.log").read_text()
        rerun = f"free space, then resume with torchrun --nproc_per_node=2 tune.py -c {tmp_path / 'config.json'}"
        ours = text.split("Traceback")[0]  # torchrun's own report of the exit comes last
        errors = [line for line in ours.splitlines() if line.startswith("error: ")]
        full = [line for line in errors if "could not save" in line and "no space left on the device" in line]
        assert full and all(rerun in line for line in full), errors
        assert "this is torchrun's restart of that job: it ends at once" in full[-1], errors  # no second try
        assert "gloo" not in ours.lower() and "Resume training from epoch" not in text, text[-4000:]
        trials = load_study(config).trials
        assert [t.state for t in trials] == [TrialState.FAIL, TrialState.WAITING], text[-4000:]
        assert trials[1].system_attrs[KILLS] == 0

        ballast.unlink()
        again = two_rank_tune(tmp_path, config, "--max-restarts=1", log_name="again.log")
        assert finish([again], deadline) == [0], (tmp_path / "again.log").read_text()[-4000:]
        assert "Resume training from epoch 2" in (tmp_path / "again.log").read_text()
        trials = load_study(config).trials
        assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
        value, reference = uninterrupted
        assert trials[-1].value == value
        for name in ("model_latest.pth", "model_best.pth"):
            assert same_weights(weights(runs / "s-trial0" / name), weights(reference / name)), name


@pytest.mark.slow
def test_a_ddp_trial_revived_by_another_worker_is_left_by_every_rank_to_its_retry(tmp_path, uninterrupted):
    """Another worker (this test, on the study's database) fails the trial and queues its retry while the two
    ranks train it: at the next epoch's report both leave it (no hang, no traceback) and the retry, on the same
    group, continues the run to the value and weights of an uninterrupted trial."""
    config = a_config(tmp_path, "s")
    runs = tmp_path / "saved" / "models" / config["name"]
    deadline = time.monotonic() + 2 * RUN_LIMIT
    agent = two_rank_tune(tmp_path, config)
    while not (runs / "s-trial0" / "checkpoint-epoch1.pth").exists():
        assert agent.poll() is None and time.monotonic() < deadline, "the trial ended before its first checkpoint"
        time.sleep(0.05)
    study = load_study(config)
    (running,) = study.get_trials(states=(TrialState.RUNNING,))
    assert fail_if_running(study._storage, running._trial_id)
    retry_after_kill()(study, study._storage.get_trial(running._trial_id))
    assert finish([agent], deadline) == [0], (tmp_path / "tune.log").read_text()[-4000:]

    text = (tmp_path / "tune.log").read_text()
    assert "trial 0 (s-trial0) was revived by another worker while this one trained it" in text
    assert "Traceback" not in text and "Resume training from epoch" in text, text[-4000:]
    trials = load_study(config).trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert [p.name for p in runs.iterdir()] == ["s-trial0"]
    value, reference = uninterrupted
    assert trials[-1].value == value
    for name in ("model_latest.pth", "model_best.pth"):
        assert same_weights(weights(runs / "s-trial0" / name), weights(reference / name)), name
