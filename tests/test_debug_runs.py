"""trainer.overfit_batches (the same first batches to train and validate on) and train.py --dry_run (one batch
each, nothing saved): the quick checks of a new model/data pair."""
import itertools
import json
import re

import numpy as np
import pytest
import torch

import train
from tests.helpers.cli import run_cli, run_script
from tests.helpers.configs import shrink_config, write_config
from tests.helpers.paths import REPO
from tests.helpers.runs import run_dirs
from tests.helpers.torchrun import STANDALONE, run_torchrun
from tests.synthetic_mnist import FILES, synthetic_digits, write_idx
from trainer.fixed_batches import FixedBatches


def files_under(root):
    return sorted(p.relative_to(root) for p in root.rglob("*"))


# ---- overfit_batches ------------------------------------------------------------------------------------------

def test_one_batch_overfits_the_default_model_within_100_steps(tmp_path, synthetic_data_dir, capsys, one_thread):
    config = shrink_config(tmp_path, synthetic_data_dir, overfit_batches=1, epochs=1, len_epoch=100, log_step=1)
    trainer = train.build_trainer(train.parse_args(["-c", str(write_config(tmp_path, config))]))
    trainer.train()
    # the console's per-step lines (verbosity 2): "Train Epoch: 1 [k/100 (k%)] Loss: x"
    losses = [float(x) for x in re.findall(r"\] Loss: ([0-9.]+)", capsys.readouterr().out)]
    assert len(losses) == 100
    assert min(losses) < 0.05, f"lowest training loss in 100 steps: {min(losses)}"
    assert trainer.stream.data_pass == 100  # each step a whole pass: the one batch, again and again
    valid = trainer.valid_metrics
    assert valid.count("loss") == 64  # validated on that batch (the held-out split has 60 samples)
    assert valid.avg("loss") < 0.05 and valid.avg("accuracy") == 1.0  # the same batch, dropout off


def test_training_and_validation_get_the_same_first_batches_every_pass(tmp_path, synthetic_data_dir):
    path = write_config(tmp_path, shrink_config(tmp_path, synthetic_data_dir, overfit_batches=2))
    config = train.parse_args(["-c", str(path)])
    trainer = train.build_trainer(config)
    assert trainer.valid_data_loader is trainer.data_loader and len(trainer.data_loader) == 2
    in_order = trainer.data_loader.source.evaluation_loader()  # the split's first batches, unshuffled
    expected = list(itertools.islice(in_order, 2))
    served = list(trainer.stream.take(5))  # crosses passes: batches 1, 2, 1, 2, 1
    for got, want in zip(served, (expected * 3)[:5], strict=True):
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    validated = list(trainer.valid_data_loader)
    assert all(torch.equal(v[0], w[0]) for v, w in zip(validated, expected, strict=True))


def test_fixed_batches_skip_samples_for_a_mid_epoch_resume():
    loader = torch.utils.data.DataLoader(torch.arange(40), batch_size=4)
    fixed = FixedBatches(loader, 3)
    assert len(fixed) == 3 and len(fixed.sampler) == 12
    fixed.skip_samples(4)
    assert [b.tolist() for b in fixed] == [[4, 5, 6, 7], [8, 9, 10, 11]]
    assert len(list(fixed)) == 3  # the skip is for one pass


def test_overfit_batches_must_be_a_positive_count(tmp_path, small_config, monkeypatch, capsys):
    code, _, err = run_cli("train", ["-c", small_config, "-o", "trainer.overfit_batches=0"], monkeypatch, capsys)
    assert code == 2
    assert err == "error: config: trainer.overfit_batches must be a positive integer (batches) or null, got 0; " \
                  "fix it in the config file or with -o trainer.overfit_batches=...\n"


# ---- --dry_run ------------------------------------------------------------------------------------------------

def test_dry_run_fits_the_default_parts_and_leaves_nothing(tmp_path, small_config, monkeypatch, capsys, one_thread):
    before = files_under(tmp_path)
    code, out, err = run_cli("train", ["-c", small_config, "--dry_run"], monkeypatch, capsys)
    assert code == 0, err
    line = re.search(r"^dry run: MnistModel takes a batch \(64, 1, 28, 28\) -> \(64, 10\), training loss "
                     r"([0-9.]+), validation loss ([0-9.]+); the parts fit\. Nothing was saved\.$", out, re.M)
    assert line, out
    assert 1.0 < float(line.group(1)) < 4.0 and 1.0 < float(line.group(2)) < 4.0  # about ln(10), untrained
    assert files_under(tmp_path) == before  # no run folder, no log folder


def write_big_digits(data_dir):
    """Synthetic MNIST files of 32x32 images: LeNet's fc1 expects 28x28's 320 features and gets 500."""
    raw = data_dir / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for training, count in ((True, 200), (False, 40)):
        images, labels = synthetic_digits(count, seed=0)
        write_idx(raw / FILES[training][0], np.pad(images, ((0, 0), (2, 2), (2, 2))))
        write_idx(raw / FILES[training][1], labels)
    return data_dir


@pytest.mark.parametrize("misfit", ["image size", "classes"])
def test_a_misfit_fails_the_dry_run_with_the_line_training_gives(misfit, tmp_path, synthetic_data_dir, monkeypatch,
                                                                   capsys, one_thread):
    if misfit == "image size":
        config = shrink_config(tmp_path, write_big_digits(tmp_path / "big"))
        expected = "model MnistModel cannot take a batch of shape (64, 1, 32, 32): mat1 and mat2 shapes"
    else:
        config = shrink_config(tmp_path, synthetic_data_dir)
        config["arch"]["args"]["num_classes"] = 5
        expected = "but the model outputs 5 classes (labels 0 to N-1); set arch.args.num_classes"
    path = write_config(tmp_path, config)
    before = files_under(tmp_path)
    outcomes = [run_cli("train", ["-c", path, *flag], monkeypatch, capsys) for flag in ([], ["--dry_run"])]
    (train_code, _, train_err), (dry_code, dry_out, dry_err) = outcomes
    assert train_code == dry_code == 2
    assert dry_err == train_err and len(dry_err.splitlines()) == 1 and expected in dry_err, dry_err
    assert "dry run:" not in dry_out
    assert files_under(tmp_path) == before


@pytest.mark.slow
def test_dry_run_as_a_user_runs_it(tmp_path, small_config):
    """The real entry point, in its own process: exit 0 and the line; a misfit exits 2 with one line."""
    done = run_script("train.py", "-c", small_config, "--dry_run")
    assert done.returncode == 0, done.stderr
    assert "the parts fit. Nothing was saved." in done.stdout
    assert not (tmp_path / "saved").exists()
    config = json.loads(small_config.read_text())
    config["arch"]["args"]["num_classes"] = 5
    failed = run_script("train.py", "-c", write_config(tmp_path, config, "misfit.json"), "--dry_run")
    assert failed.returncode == 2 and "Traceback" not in failed.stderr
    assert failed.stderr.splitlines()[-1].startswith("error: the data holds label")
    assert not (tmp_path / "saved").exists()


def test_what_training_refuses_before_its_first_batch_the_dry_run_refuses(tmp_path, synthetic_data_dir, monkeypatch,
                                                                        capsys):
    config = shrink_config(tmp_path, synthetic_data_dir, monitor="min val_loss")
    config["data_loader"]["args"]["validation_split"] = 0.0
    path = write_config(tmp_path, config)
    code, out, err = run_cli("train", ["-c", path, "--dry_run"], monkeypatch, capsys)
    assert code == 2 and err.startswith("error: trainer.monitor watches 'val_loss', which this run does not produce")
    assert not (tmp_path / "saved").exists()


def test_dry_run_from_a_checkpoint_loads_its_weights_and_writes_nothing(tmp_path, small_config, monkeypatch, capsys,
                                                                       one_thread):
    config = shrink_config(tmp_path, json.loads(small_config.read_text())["data_loader"]["args"]["data_dir"], epochs=3)
    assert run_cli("train", ["-c", write_config(tmp_path, config, "one.json")], monkeypatch, capsys)[0] == 0
    latest = next((tmp_path / "saved" / "models").glob("*/*/model_latest.pth"))
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "saved").rglob("*")}
    code, out, err = run_cli("train", ["-r", latest, "--dry_run"], monkeypatch, capsys)
    assert code == 0, err
    loss = float(re.search(r"validation loss ([0-9.]+)", out).group(1))
    assert loss < 1.0, out  # trained weights, not a fresh model's ln(10) = 2.3
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "saved").rglob("*")} == before


@pytest.mark.slow
def test_under_torchrun_rank_0_profiles_and_the_dry_run_prints_once(tmp_path, synthetic_data_dir):
    config = shrink_config(tmp_path, synthetic_data_dir, epochs=1, len_epoch=6, overfit_batches=2,
                           profile={"wait": 1, "warmup": 1, "active": 2})
    path = write_config(tmp_path, config)
    dry = run_torchrun(*STANDALONE, REPO / "train.py", "-c", path, "--dry_run")
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert dry.stdout.count("the parts fit. Nothing was saved.") == 1
    assert not (tmp_path / "saved").exists()
    trained = run_torchrun(*STANDALONE, REPO / "train.py", "-c", path)
    assert trained.returncode == 0, trained.stderr[-3000:]
    (run,) = run_dirs(tmp_path / "saved")
    log_dir = tmp_path / "saved" / "log" / config["name"] / run.name
    assert [p.name for p in log_dir.glob("profile_trace-*")] == ["profile_trace-batch3.json"]  # one, rank 0's
