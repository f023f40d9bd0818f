"""DataParallel checkpoints (no `module.` prefix, either way round) and test.py on trained checkpoints."""
import json
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

import test as test_script
import utils.util
from data_loader.data_loaders import MnistDataLoader
from model.model import MnistModel
from tests.helpers.cli import train_in_process
from tests.helpers.configs import shrink_config, write_config
from tests.helpers.paths import REPO
from trainer.trainer import Trainer

N_TEST = 200  # synthetic test split: batches of 64, 64, 64 and 8


class RecordingDataParallel(torch.nn.DataParallel):
    """torch.nn.DataParallel that remembers it was used."""

    instances = []

    def __init__(self, module, *args, **kwargs):
        super().__init__(module, *args, **kwargs)
        RecordingDataParallel.instances.append(self)


def use_data_parallel(patch):
    """Make the entry points believe two GPUs exist and wrap the model in DataParallel.

    With no accelerator DataParallel is a plain wrapper that calls its module,
    which is what is needed here: the `module.` prefix, without the GPUs.
    """
    data_parallel = sys.modules["torch.nn.parallel.data_parallel"]
    patch.setattr(data_parallel, "_get_available_device_type", lambda: None)
    patch.setattr(torch.nn, "DataParallel", RecordingDataParallel)
    patch.setattr(utils.util, "prepare_device", lambda n_gpu: (torch.device("cpu"), [0, 1]))
    RecordingDataParallel.instances.clear()


@pytest.fixture(scope="module")
def dp_run(tmp_path_factory, synthetic_data_dir):
    """A 2-epoch run whose model was wrapped in DataParallel (as with n_gpu 2)."""
    tmp_path = tmp_path_factory.mktemp("dp_run")
    cfg = shrink_config(tmp_path, synthetic_data_dir)
    cfg["n_gpu"] = 2
    with pytest.MonkeyPatch.context() as patch:
        use_data_parallel(patch)
        config = train_in_process("-c", write_config(tmp_path, cfg))
        assert len(RecordingDataParallel.instances) == 1, "train.py wraps the model in DataParallel"
    return config


def exact_test_results(checkpoint_path, data_dir):
    """Per-sample loss and accuracy over the whole test split, computed independently of test.py."""
    model = MnistModel().eval()
    model.load_state_dict(torch.load(checkpoint_path, weights_only=True)["state_dict"])
    loader = MnistDataLoader(str(data_dir), 64, shuffle=False, validation_split=0, training=False, download=False)
    loss_sum, correct, count = 0.0, 0, 0
    with torch.no_grad():
        for images, targets in loader:
            output = model(images)
            loss_sum += F.nll_loss(output, targets, reduction="sum").item()
            correct += (output.argmax(dim=1) == targets).sum().item()
            count += len(targets)
    return {"loss": loss_sum / count, "accuracy": correct / count, "n_samples": count}


def run_test_py(checkpoint_path):
    test_script.main(test_script.parse_args(["-r", str(checkpoint_path)]))
    return json.loads(checkpoint_path.with_name(f"{checkpoint_path.stem}.test.json").read_text())


def test_data_parallel_checkpoint_has_plain_keys(dp_run):
    # the classic template saves the wrapper's state_dict: every key starts with "module."
    plain_keys = set(MnistModel().state_dict())
    for name in ("checkpoint-epoch2.pth", "model_best.pth", "model_latest.pth"):
        state_dict = torch.load(dp_run.save_dir / name, weights_only=True, map_location="cpu")["state_dict"]
        assert set(state_dict) == plain_keys, name
        MnistModel().load_state_dict(state_dict)  # strict: loads on one device without any wrapper


def test_test_py_reports_loss_and_metrics(dp_run, capsys):
    best = dp_run.save_dir / "model_best.pth"

    results = run_test_py(best)

    printed = capsys.readouterr().out
    exact = exact_test_results(best, dp_run["data_loader"]["args"]["data_dir"])
    assert results["n_samples"] == N_TEST == exact["n_samples"]
    assert results["checkpoint"] == str(best)
    assert set(results["metrics"]) == {"loss", "accuracy", "top_k_acc"}
    # exact per-sample averages: the last batch of 8 weighs 8, not as much as a batch of 64
    assert results["metrics"]["loss"] == pytest.approx(exact["loss"], rel=1e-5)
    assert results["metrics"]["accuracy"] == pytest.approx(exact["accuracy"], abs=1e-6)
    for key in ("loss", "accuracy", "top_k_acc"):
        assert f"{key}" in printed and f"{results['metrics'][key]:.6f}" in printed
    assert f"samples  : {N_TEST}" in printed


def test_test_py_evaluates_with_data_parallel(dp_run, monkeypatch):
    best = dp_run.save_dir / "model_best.pth"
    use_data_parallel(monkeypatch)

    results = run_test_py(best)

    assert len(RecordingDataParallel.instances) == 1, "test.py wraps the model in DataParallel"
    exact = exact_test_results(best, dp_run["data_loader"]["args"]["data_dir"])
    assert results["n_samples"] == N_TEST
    assert results["metrics"]["accuracy"] == pytest.approx(exact["accuracy"], abs=1e-6)


@pytest.fixture
def prefixed_checkpoint(dp_run, tmp_path):
    """model_best.pth as the classic template would have saved it from DataParallel: `module.` keys."""
    checkpoint = torch.load(dp_run.save_dir / "model_best.pth", weights_only=True)
    checkpoint["state_dict"] = {f"module.{k}": v for k, v in checkpoint["state_dict"].items()}
    path = tmp_path / "legacy" / "model_best.pth"
    path.parent.mkdir()
    torch.save(checkpoint, path)
    return path


def test_test_py_loads_a_checkpoint_with_module_prefixes(dp_run, prefixed_checkpoint):
    results = run_test_py(prefixed_checkpoint)

    exact = exact_test_results(dp_run.save_dir / "model_best.pth", dp_run["data_loader"]["args"]["data_dir"])
    assert results["n_samples"] == N_TEST
    assert results["metrics"]["loss"] == pytest.approx(exact["loss"], rel=1e-5)


def test_training_resumes_from_a_checkpoint_with_module_prefixes(dp_run, prefixed_checkpoint, monkeypatch):
    built = []
    monkeypatch.setattr(Trainer, "train", lambda self: (self._start_run(), built.append(self)))

    train_in_process("-r", prefixed_checkpoint)

    (trainer,) = built
    expected = torch.load(dp_run.save_dir / "model_best.pth", weights_only=True)["state_dict"]
    actual = trainer.raw_model.state_dict()
    assert set(actual) == set(expected)
    assert all(torch.equal(actual[k], expected[k]) for k in expected)


@pytest.mark.parametrize("args", [[], ["-c", "config.json"]], ids=["nothing", "a config"])
def test_test_py_without_a_checkpoint_is_refused(args):
    # no -r: test.py needs a checkpoint and says so in one line, suggesting nothing that would fail
    done = subprocess.run([sys.executable, "test.py", *args], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == "error: the following arguments are required: -r/--resume; see python test.py --help\n"
