"""Stop and resume gives bit for bit the run that never stopped.

Each test trains the same seeded config twice in this process: once straight
through, once stopped (after k epochs, or mid-epoch by SIGTERM) and resumed
with -r. Final weights, optimizer, scheduler, monitor and RNG state must be
identical, and so must metrics.csv apart from its timing columns.
"""
import pytest
import torch

from tests.helpers.cli import train_in_process
from tests.helpers.configs import shrink_config, write_config
from tests.helpers.exact_resume import assert_identical, stop_by_sigterm_at
from tests.helpers.runs import run_dirs
from tests.synthetic_mnist import write_synthetic_mnist
from utils.signals import TrainingInterrupted

TIMING_COLUMNS = ("epoch_time", "samples_per_sec")
# what must match between the two runs (the config differs: the first part ran fewer epochs)
COMPARED_KEYS = ("epoch", "resume_batch", "global_step", "state_dict", "optimizer", "lr_scheduler", "monitor",
                 "rng_states", "data_stream")
BATCHES_PER_EPOCH = 5  # 300 synthetic samples, 10% held out, batches of 64

STEP_LR = {"type": "StepLR", "args": {"step_size": 2, "gamma": 0.5}}
COSINE = {"type": "CosineAnnealingLR", "args": {"T_max": 3}}
# mode "max" on a falling val_loss: every epoch is "bad", so the lr drops every patience+1 epochs
PLATEAU = {"type": "ReduceLROnPlateau", "args": {"mode": "max", "patience": 1, "factor": 0.5}}


def make_config(tmp_path, data_dir, scheduler=STEP_LR, epochs=4, **trainer):
    config = shrink_config(tmp_path, data_dir, epochs=epochs, verbosity=1, **trainer)
    config["lr_scheduler"] = scheduler
    return config


def train_fresh(tmp_path, config):
    """Train `config` from scratch in this process; return its run folder."""
    train_in_process("-c", write_config(tmp_path, config))
    (run,) = run_dirs(tmp_path / "saved")
    return run


def resume(run, epochs=None):
    """python train.py -r <run>/model_latest.pth [-o trainer.epochs=N], in this process."""
    extra = ["-o", f"trainer.epochs={epochs}"] if epochs else []
    train_in_process("-r", run / "model_latest.pth", *extra)


def load(path):
    return torch.load(path, weights_only=True)


def metric_history(run):
    """metrics.csv as text rows, without the columns that measure time."""
    header, *rows = (run / "metrics.csv").read_text().splitlines()
    names = header.split(",")
    keep = [i for i, name in enumerate(names) if name not in TIMING_COLUMNS]
    return [[line.split(",")[i] for i in keep] for line in [header, *rows]]


def assert_same_run(reference, resumed):
    ref, res = load(reference / "model_latest.pth"), load(resumed / "model_latest.pth")
    for key in ref["state_dict"]:
        assert torch.equal(ref["state_dict"][key], res["state_dict"][key]), f"weights differ: {key}"
    for key in COMPARED_KEYS:
        assert_identical(ref.get(key), res.get(key), key)
    assert metric_history(resumed) == metric_history(reference)
    epochs = [int(row[0]) for row in metric_history(resumed)[1:]]
    assert epochs == list(range(1, ref["epoch"] + 1)), "metrics.csv must continue without duplicates"


def assert_continued_in_place(tmp_path, run):
    """One run folder, one log folder, and info.log holds both parts."""
    assert run_dirs(tmp_path / "saved") == [run]
    (log_dir,) = (tmp_path / "saved" / "log").glob("*/*")
    assert log_dir.name == run.name
    log = (log_dir / "info.log").read_text()
    first_part = log[:log.index("Resume training from")]
    assert "Training finished" in first_part or "Stopped by SIGTERM" in first_part, "info.log must be appended"


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny batches on a small shared machine: a pool of torch threads waits more than it works."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """Smaller than the shared synthetic set: these tests train many short runs."""
    return write_synthetic_mnist(tmp_path_factory.mktemp("mnist300"), n_train=300, n_test=10)


@pytest.fixture(scope="module")
def reference_runs(tmp_path_factory, data_dir):
    """Uninterrupted runs, trained once per config and shared by the tests."""
    cache = {}

    def get(**config_args):
        key = repr(sorted(config_args.items()))
        if key not in cache:
            tmp = tmp_path_factory.mktemp("reference")
            cache[key] = train_fresh(tmp, make_config(tmp, data_dir, **config_args))
        return cache[key]
    return get


@pytest.mark.parametrize("scheduler, epochs, stop_after", [
    (STEP_LR, 4, 3),    # stops between the decays after epochs 2 and 4
    (COSINE, 3, 2),
    (PLATEAU, 4, 2),    # resumes with the plateau counter at 1 of its patience
], ids=["StepLR", "CosineAnnealingLR", "ReduceLROnPlateau"])
def test_resume_between_epochs_is_exact(scheduler, epochs, stop_after, tmp_path, data_dir, reference_runs):
    reference = reference_runs(scheduler=scheduler, epochs=epochs)
    run = train_fresh(tmp_path, make_config(tmp_path, data_dir, scheduler=scheduler, epochs=stop_after))
    resume(run, epochs=epochs)

    assert_same_run(reference, run)
    assert_continued_in_place(tmp_path, run)
    learning_rates = {row[-1] for row in metric_history(run)[1:]}
    assert len(learning_rates) > 1, "the scheduler must change the lr within the run"


def test_early_stop_counts_across_the_resume(tmp_path, data_dir, reference_runs):
    # "max val_loss" on a falling loss: no epoch after the first improves, so the run stops early
    stop_rule = {"monitor": "max val_loss", "early_stop": 1}
    reference = reference_runs(epochs=6, **stop_rule)
    stopped_at = load(reference / "model_latest.pth")["epoch"]
    assert stopped_at == 3  # best at 1, then 2 epochs without improvement > early_stop

    run = train_fresh(tmp_path, make_config(tmp_path, data_dir, epochs=2, **stop_rule))
    assert load(run / "model_latest.pth")["monitor"]["not_improved"] == 1  # the count spans the resume
    resume(run, epochs=6)

    assert_same_run(reference, run)
    assert "Training stops" in (next((tmp_path / "saved" / "log").glob("*/*")) / "info.log").read_text()


# Resuming after the last batch of epoch 1 steps the scheduler before this process stepped the
# optimizer; torch warns, though the restored schedule is right (the test proves it).
@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before `optimizer.step\\(\\)`")
@pytest.mark.parametrize("trainer_args, batch_number, epoch_done, batches_done", [
    ({}, 8, 1, 3),                                    # epoch 2, batch 3 of 5
    ({}, BATCHES_PER_EPOCH, 0, BATCHES_PER_EPOCH),    # the last batch of epoch 1
    # epochs of 3 batches over passes of 5: epoch 2 crosses into pass 2, epoch 3 stops after its
    # first batch, 2 batches into pass 2; a stop on a pass boundary could not tell a lost position
    ({"len_epoch": 3}, 7, 2, 1),
    # a signal inside an accumulation window stops after the window's optimizer step
    ({"accumulate_steps": 2}, 8, 1, 4),
], ids=["mid-epoch", "last-batch", "len_epoch-across-passes", "accumulation"])
def test_resume_mid_epoch_after_sigterm_is_exact(trainer_args, batch_number, epoch_done, batches_done,
                                                 tmp_path, data_dir, reference_runs, monkeypatch):
    reference = reference_runs(epochs=4, **trainer_args)
    config = make_config(tmp_path, data_dir, epochs=4, **trainer_args)
    stop_by_sigterm_at(monkeypatch, batch_number)
    with pytest.raises(TrainingInterrupted) as stop:
        train_fresh(tmp_path, config)
    assert stop.value.exit_code == 143
    monkeypatch.undo()

    (run,) = run_dirs(tmp_path / "saved")
    saved = load(run / "model_latest.pth")
    assert (saved["epoch"], saved["resume_batch"]) == (epoch_done, batches_done)
    resume(run)

    assert_same_run(reference, run)
    assert_continued_in_place(tmp_path, run)
