"""trainer.ema: the averaged weights are the EMA of the weights after each optimizer step, a stop and resume
continues them (and the raw weights) bit for bit, validation and test.py can measure them."""
import json

import pytest
import torch

import train
import trainer.trainer as trainer_module
from tests.helpers.cli import run_cli, train_in_process
from tests.helpers.configs import shrink_config, write_config
from tests.helpers.exact_resume import assert_identical, stop_by_sigterm_at
from tests.helpers.runs import run_dirs
from tests.synthetic_mnist import write_synthetic_mnist
from trainer.ema import AveragedWeights
from trainer.evaluation import evaluate
from utils.config.ema_option import ema_settings
from utils.signals import TrainingInterrupted

EMA = {"decay": 0.9, "every": 2, "start": 1}
COMPARED = ("epoch", "resume_batch", "global_step", "state_dict", "optimizer", "monitor", "data_stream", "ema")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """300 samples, 10% held out, batches of 64: 5 batches an epoch."""
    return write_synthetic_mnist(tmp_path_factory.mktemp("mnist300"), n_train=300, n_test=60)


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Tiny batches: a pool of torch threads waits more than it works."""


def train_run(tmp_path, data_dir, *extra, **trainer):
    tmp_path.mkdir(parents=True, exist_ok=True)
    config = shrink_config(tmp_path, data_dir, verbosity=1, monitor="min val_loss", **trainer)
    train_in_process("-c", write_config(tmp_path, config), *extra)
    (run,) = run_dirs(tmp_path / "saved")
    return run


def load(path):
    return torch.load(path, weights_only=True)


def hand_ema(steps, decay, every, start):
    """The EMA of the weights after each optimizer step (in float64), and how many steps it averaged."""
    average, n = None, 0
    for k, weights in enumerate(steps, start=1):
        if k > start and (k - start) % every == 0:
            average = {name: w.double() if average is None else decay * average[name] + (1 - decay) * w.double()
                       for name, w in weights.items()}
            n += 1
    return average, n


def test_the_average_is_the_ema_of_the_weights_after_optimizer_steps(tmp_path, data_dir, monkeypatch):
    seen, step = [], trainer_module.Trainer._optimizer_step

    def step_and_record(self):
        step(self)
        seen.append({k: v.detach().clone() for k, v in self.raw_model.state_dict().items()})
    monkeypatch.setattr(trainer_module.Trainer, "_optimizer_step", step_and_record)
    settings = {"decay": 0.8, "every": 1, "start": 2}
    # batches of 2 micro-batches: 3 optimizer steps an epoch (the last window is one batch)
    run = train_run(tmp_path, data_dir, epochs=2, accumulate_steps=2, ema=settings)

    saved = load(run / "model_latest.pth")
    expected, n = hand_ema(seen, **settings)
    assert len(seen) == 6 and saved["ema"]["n_averaged"] == n == 4 and saved["ema"]["steps"] == 6
    for name, value in saved["ema"]["weights"].items():
        assert torch.allclose(value.double(), expected[name], rtol=0, atol=1e-6), name
        assert not torch.equal(value, saved["state_dict"][name]), f"{name}: the average is the weights"


def test_buffers_are_copied_and_the_average_follows_the_weights_until_it_starts():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    ema = AveragedWeights(model, ema_settings({"decay": 0.5, "every": 2, "start": 1}), note=None)
    seen = []
    for _ in range(6):
        model(torch.randn(8, 3)).square().mean().backward()
        optimizer.step()
        optimizer.zero_grad()
        ema.update()
        seen.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        if ema.n_averaged == 0:  # nothing averaged yet: the average is the weights
            assert_identical(ema.weights(), model.state_dict())
    expected, n = hand_ema(seen, 0.5, 2, 1)
    assert ema.n_averaged == n == 2
    for name in ("0.weight", "0.bias", "1.weight", "1.bias"):
        assert torch.allclose(ema.weights()[name].double(), expected[name], rtol=0, atol=1e-6), name
    for name in ("1.running_mean", "1.running_var", "1.num_batches_tracked"):  # copied at the last update (step 5)
        assert torch.equal(ema.weights()[name], seen[4][name]), name


@pytest.mark.parametrize("stop", ["between-epochs", "mid-epoch"])
def test_stop_and_resume_continues_the_average_and_the_weights_bit_for_bit(stop, tmp_path, data_dir, monkeypatch):
    settings = {**EMA, "validate": True}
    reference = train_run(tmp_path / "reference", data_dir, epochs=3, ema=settings)
    if stop == "between-epochs":
        run = train_run(tmp_path / "stopped", data_dir, epochs=1, ema=settings)
        train_in_process("-r", run / "model_latest.pth", "-o", "trainer.epochs=3")
    else:
        stop_by_sigterm_at(monkeypatch, 8)  # epoch 2, batch 3 of 5
        with pytest.raises(TrainingInterrupted):
            train_run(tmp_path / "stopped", data_dir, epochs=3, ema=settings)
        monkeypatch.undo()
        (run,) = run_dirs(tmp_path / "stopped" / "saved")
        saved = load(run / "model_latest.pth")["ema"]
        assert (saved["steps"], saved["n_averaged"]) == (8, 3)  # averaged after steps 3, 5 and 7
        train_in_process("-r", run / "model_latest.pth")

    ref, res = load(reference / "model_latest.pth"), load(run / "model_latest.pth")
    assert ref["ema"]["n_averaged"] == 7  # 15 steps: averaged after 3, 5, ..., 15
    for key in COMPARED:
        assert_identical(ref[key], res[key], key)
    columns = [line.split(",")[:8] for line in (run / "metrics.csv").read_text().splitlines()]  # no timings
    assert columns == [line.split(",")[:8] for line in (reference / "metrics.csv").read_text().splitlines()]


def validation_of(run, weights):
    """The loss and accuracy of `weights` on `run`'s validation split, as the trainer measures them."""
    trainer = train.build_trainer(train.parse_args(["-c", str(run / "config.json")]))
    trainer.raw_model.load_state_dict(weights)
    trainer.raw_model.eval()
    return evaluate(trainer.raw_model, trainer.valid_data_loader, trainer.criterion, trainer.metric_ftns,
                    trainer.device).result()


def last_row(run):
    header, *rows = (run / "metrics.csv").read_text().splitlines()
    return dict(zip(header.split(","), map(float, rows[-1].split(",")), strict=True))


def test_validation_measures_the_average_when_configured(tmp_path, data_dir):
    on_average = train_run(tmp_path / "ema", data_dir, epochs=1, ema={**EMA, "validate": True})
    on_raw = train_run(tmp_path / "raw", data_dir, epochs=1, ema=EMA)
    a, b = load(on_average / "model_latest.pth"), load(on_raw / "model_latest.pth")
    assert_identical(a["state_dict"], b["state_dict"])  # validating on the average leaves training as it was
    assert (a["ema"]["validate"], b["ema"]["validate"]) == (True, False)
    row, raw_row = last_row(on_average), last_row(on_raw)
    assert (row["val_on_ema"], raw_row["val_on_ema"]) == (1, 0)
    assert row["val_loss"] == pytest.approx(validation_of(on_average, a["ema"]["weights"])["loss"], rel=1e-12)
    assert raw_row["val_loss"] == pytest.approx(validation_of(on_raw, b["state_dict"])["loss"], rel=1e-12)
    assert abs(row["val_loss"] - raw_row["val_loss"]) > 1e-6


def test_py_evaluates_the_average_unless_raw(tmp_path, data_dir, monkeypatch, capsys):
    run = train_run(tmp_path, data_dir, epochs=2, ema=EMA)
    checkpoint = load(run / "model_latest.pth")
    as_plain = {**checkpoint, "state_dict": checkpoint["ema"]["weights"], "ema": None}  # the average, alone
    torch.save(as_plain, run / "average_alone.pth")

    def test_py(name, *flags):
        result = run_cli("test", ["-r", run / name, *flags], monkeypatch, capsys)
        assert result.returncode == 0, result.stderr
        return json.loads((run / name.replace(".pth", ".test.json")).read_text()), result.stdout + result.stderr
    default, printed = test_py("model_latest.pth")
    assert "weights" in printed and "ema (decay 0.9, 4 updates" in printed
    assert default["weights"].startswith("ema") and default["metrics"] == test_py("average_alone.pth")[0]["metrics"]
    raw, printed = test_py("model_latest.pth", "--raw")
    assert raw["weights"].startswith("raw") and raw["metrics"]["loss"] != default["metrics"]["loss"]


def test_a_checkpoint_without_an_average_starts_one_and_says_so(tmp_path, data_dir):
    run = train_run(tmp_path, data_dir, epochs=1)
    assert load(run / "model_latest.pth")["ema"] is None
    train_in_process("-r", run / "model_latest.pth", "-o", "trainer.epochs=2", "-o", 'trainer.ema={"decay": 0.9}')

    saved = load(run / "model_latest.pth")["ema"]
    assert (saved["n_averaged"], saved["steps"]) == (5, 5)  # epoch 2's optimizer steps
    (log_dir,) = (tmp_path / "saved" / "log").glob("*/*")
    assert (log_dir / "info.log").read_text().count("The checkpoint has no averaged weights (EMA)") == 1
