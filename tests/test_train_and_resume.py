"""A short training run, its files and checkpoints, and resuming from them."""
import shutil

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from data_loader.data_loaders import MnistDataLoader
from model.model import MnistModel
from runs.checkpointer import Checkpointer
from tests.helpers.cli import train_in_process
from tests.helpers.configs import shrink_config, write_config
from tests.helpers.runs import run_dirs
from trainer.trainer import Trainer

STEP_LR = {"type": "StepLR", "args": {"step_size": 1, "gamma": 0.5}}  # halves lr after every epoch


def baseline_config(tmp_path, data_dir, **trainer):
    """Shrunk config: 100 validation samples (batches of 64 and 36), StepLR halving each epoch."""
    cfg = shrink_config(tmp_path, data_dir, **trainer)
    cfg["data_loader"]["args"]["validation_split"] = 100
    cfg["lr_scheduler"] = STEP_LR
    return cfg


@pytest.fixture(scope="module")
def baseline(tmp_path_factory, synthetic_data_dir):
    """One uninterrupted 2-epoch run with TensorBoard on; shared by the tests that only read it."""
    tmp_path = tmp_path_factory.mktemp("baseline")
    cfg = baseline_config(tmp_path, synthetic_data_dir, tensorboard=True)
    return train_in_process("-c", write_config(tmp_path, cfg))


def history(run_dir):
    return pd.read_csv(run_dir / "metrics.csv").set_index("epoch")


def load(path):
    return torch.load(path, weights_only=True, map_location="cpu")


def same(a, b):
    """Deep equality of plain data with tensors."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def resume_copy(checkpoint, folder):
    """Copy a checkpoint into its own folder, so that resuming from it leaves the original run alone."""
    folder.mkdir()
    return shutil.copy(checkpoint, folder / checkpoint.name)


# ---- files of a run ----------------------------------------------------------
def test_two_epoch_run_writes_the_expected_files(baseline):
    (run,) = run_dirs(baseline["trainer"]["save_dir"])
    assert run == baseline.save_dir
    assert {"config.json", "checkpoint-epoch1.pth", "checkpoint-epoch2.pth", "model_best.pth",
            "model_latest.pth", "metrics.csv"} <= {p.name for p in run.iterdir()}
    assert baseline.log_dir.name == run.name
    info = (baseline.log_dir / "info.log").read_text()
    assert "val_loss" in info and "Saving checkpoint" in info
    assert list(baseline.log_dir.glob("events.out.tfevents.*")), "tensorboard true writes an events file"
    assert list(history(run).index) == [1, 2]


def test_checkpoints_are_plain_data_for_the_safe_loader(baseline):
    # the classic template pickles its ConfigParser (and Paths), which weights_only=True refuses
    for path in sorted(baseline.save_dir.glob("*.pth")):
        checkpoint = load(path)
        assert type(checkpoint["config"]) is dict
        assert checkpoint["config"]["trainer"]["save_dir"] == baseline["trainer"]["save_dir"]
        assert_plain(checkpoint, path.name)
    assert load(baseline.save_dir / "checkpoint-epoch2.pth")["epoch"] == 2


def assert_plain(value, where):
    if isinstance(value, dict):
        for key, item in value.items():
            assert isinstance(key, (str, int)), f"{where} has a key of type {type(key).__name__}"
            assert_plain(item, f"{where}[{key!r}]")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            assert_plain(item, f"{where}[{index}]")
    else:
        assert isinstance(value, (str, int, float, bool, type(None), torch.Tensor)), \
            f"{where} holds a {type(value).__name__}"


def test_validation_loss_weighs_every_sample_alike_over_unequal_batches(baseline):
    # the classic trainer averages batch means, so a 36-sample batch counts as much as a 64-sample one
    loader = MnistDataLoader(baseline["data_loader"]["args"]["data_dir"], 64, validation_split=100,
                             download=False, seed=baseline["seed"]).split_validation()
    model = MnistModel().eval()
    model.load_state_dict(load(baseline.save_dir / "model_latest.pth")["state_dict"])
    with torch.no_grad():
        sums = [(F.nll_loss(model(x), y, reduction="sum").item(), len(y)) for x, y in loader]
    assert [n for _, n in sums] == [64, 36]
    per_sample = sum(s for s, _ in sums) / 100
    per_batch = sum(s / n for s, n in sums) / len(sums)
    assert abs(per_sample - per_batch) > 1e-4, "the two averages must differ for this test to mean anything"

    # float32 sums in another order differ by ~5e-8 relative; the per-batch average is off by > 1e-4
    assert history(baseline.save_dir).loc[2, "val_loss"] == pytest.approx(per_sample, rel=1e-6)


def test_model_best_is_written_on_every_improvement(tmp_path, synthetic_data_dir, monkeypatch):
    # the classic template writes model_best only on save_period epochs
    writes = []
    real_save = Checkpointer.write
    monkeypatch.setattr(Checkpointer, "write", lambda self, state, names, *args: (
        writes.extend((name, state["epoch"]) for name in names), real_save(self, state, names, *args)))
    cfg = baseline_config(tmp_path, synthetic_data_dir, epochs=4, save_period=3)
    config = train_in_process("-c", write_config(tmp_path, cfg))

    val_loss = history(config.save_dir)["val_loss"]
    improved = [epoch for epoch in val_loss.index if val_loss.loc[epoch] <= val_loss.loc[:epoch].min()]
    assert improved[0] == 1
    assert [epoch for name, epoch in writes if name == "model_best.pth"] == improved
    assert [name for name, _ in writes if name.startswith("checkpoint-")] == \
        ["checkpoint-epoch3.pth", "checkpoint-epoch4.pth"]  # save_period, then the last epoch
    assert load(config.save_dir / "model_best.pth")["epoch"] == improved[-1]


# ---- resume ------------------------------------------------------------------
def test_resume_restores_optimizer_and_scheduler_state(baseline, tmp_path, monkeypatch):
    checkpoint_path = resume_copy(baseline.save_dir / "checkpoint-epoch1.pth", tmp_path / "resume_state")
    built = []
    monkeypatch.setattr(Trainer, "train", lambda self: (self._start_run(), built.append(self)))

    train_in_process("-r", checkpoint_path)

    (trainer,) = built
    checkpoint = load(checkpoint_path)
    assert trainer.start_epoch == 2
    assert same(trainer.optimizer.state_dict(), checkpoint["optimizer"])
    assert trainer.lr_scheduler.state_dict() == checkpoint["lr_scheduler"]
    assert checkpoint["lr_scheduler"]["last_epoch"] == 1
    assert same(trainer.raw_model.state_dict(), checkpoint["state_dict"])


def test_resumed_run_continues_like_the_uninterrupted_one(baseline, tmp_path):
    checkpoint_path = resume_copy(baseline.save_dir / "checkpoint-epoch1.pth", tmp_path / "resumed")

    resumed = train_in_process("-r", checkpoint_path)

    assert resumed.save_dir == tmp_path / "resumed"
    ours, theirs = load(resumed.save_dir / "checkpoint-epoch2.pth"), load(baseline.save_dir / "checkpoint-epoch2.pth")
    # StepLR(step_size=1) keeps halving from where it was: epoch 2 ran at 0.0005, next is 0.00025
    assert ours["lr_scheduler"]["last_epoch"] == 2
    assert ours["lr_scheduler"] == theirs["lr_scheduler"]
    assert ours["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.00025)
    resumed_history = history(resumed.save_dir)
    assert list(resumed_history.index) == [2]
    assert resumed_history.loc[2, "lr"] == pytest.approx(0.0005)
    for column in ("loss", "accuracy", "val_loss", "val_accuracy"):  # the same numbers, exactly
        assert resumed_history.loc[2, column] == history(baseline.save_dir).loc[2, column], column


def test_resumed_step_lr_keeps_its_schedule(tmp_path, synthetic_data_dir):
    # StepLR(step_size=2): a scheduler started afresh on resume would wait two more epochs to decay
    cfg = baseline_config(tmp_path, synthetic_data_dir, epochs=3)
    cfg["lr_scheduler"] = {"type": "StepLR", "args": {"step_size": 2, "gamma": 0.5}}
    first = train_in_process("-c", write_config(tmp_path, cfg))
    checkpoint_path = resume_copy(first.save_dir / "checkpoint-epoch1.pth", tmp_path / "resumed")

    resumed = train_in_process("-r", checkpoint_path)

    assert list(history(first.save_dir)["lr"]) == pytest.approx([0.001, 0.001, 0.0005])
    assert list(history(resumed.save_dir)["lr"]) == pytest.approx([0.001, 0.0005])


def test_fine_tuning_with_another_optimizer_warns_and_starts_it_afresh(baseline, tmp_path, synthetic_data_dir,
                                                                      capsys):
    cfg = baseline_config(tmp_path, synthetic_data_dir)
    cfg["optimizer"] = {"type": "SGD", "args": {"lr": 0.01, "momentum": 0.9}}
    other = write_config(tmp_path, cfg, "other.json")

    tuned = train_in_process("-c", other, "-r", baseline.save_dir / "checkpoint-epoch1.pth")

    assert run_dirs(tmp_path / "saved") == [tuned.save_dir]  # a new run, in the new config's save_dir
    # noted while loading (before any folder exists), written once the run's info.log does
    console = capsys.readouterr().out
    info_log = (tuned.log_dir / "info.log").read_text()
    for text in (console, info_log):
        assert "Optimizer type given in config file is different from that of checkpoint" in text
        assert "the lr_scheduler starts afresh" in text
    checkpoint = load(tuned.save_dir / "checkpoint-epoch2.pth")
    assert checkpoint["epoch"] == 2
    assert history(tuned.save_dir).loc[2, "lr"] == pytest.approx(0.01)
    # the scheduler belongs to the old optimizer: it starts afresh from the new lr, not the old one's
    assert checkpoint["lr_scheduler"]["base_lrs"] == [0.01]
    assert checkpoint["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.005)


def test_fine_tuning_with_another_scheduler_starts_it_afresh(baseline, tmp_path, synthetic_data_dir):
    # loading StepLR's state into another scheduler would give it StepLR's settings and step count
    cfg = baseline_config(tmp_path, synthetic_data_dir)
    cfg["lr_scheduler"] = {"type": "ExponentialLR", "args": {"gamma": 0.9}}
    other = write_config(tmp_path, cfg, "other.json")

    tuned = train_in_process("-c", other, "-r", baseline.save_dir / "checkpoint-epoch1.pth")

    scheduler = load(tuned.save_dir / "checkpoint-epoch2.pth")["lr_scheduler"]
    assert "step_size" not in scheduler
    assert scheduler["last_epoch"] == 1 and scheduler["gamma"] == 0.9


def test_fine_tuning_keeps_the_new_configs_learning_rate(baseline, tmp_path, synthetic_data_dir):
    # same optimizer type: its moments are resumed, but the lr is the one the new config asks for
    cfg = baseline_config(tmp_path, synthetic_data_dir)
    cfg["optimizer"]["args"]["lr"] = 0.0123
    tuned = train_in_process("-c", write_config(tmp_path, cfg, "tune.json"),
                             "-r", baseline.save_dir / "checkpoint-epoch1.pth")

    assert history(tuned.save_dir).loc[2, "lr"] == 0.0123  # the lr epoch 2 trained with
    optimizer = load(tuned.save_dir / "checkpoint-epoch2.pth")["optimizer"]
    assert optimizer["state"], "the optimizer's moments should come from the checkpoint"
