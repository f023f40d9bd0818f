"""This project's tests: its own config.json, made small in one place (`shrink`), run through its own parts.

The tests build whatever model, data loader, loss and metrics config.json names, so they follow the config:
swap in your own parts there and run `python -m pytest` again (README.md, "Tests")."""
import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.synthetic_mnist import write_synthetic_mnist
from utils.lookup import accepts_keyword

PROJECT = next(p for p in Path(__file__).resolve().parents if (p / "train.py").is_file())
CONFIG = PROJECT / "config.json"
BATCHES_PER_EPOCH = 3  # a few optimizer steps show that training works; more only cost time
MAX_BATCH_SIZE = 8
EPOCHS = 2  # the resume test stops after the first


def shrink(config, save_dir, mnist_dir):
    """The config made small: few tiny epochs on the CPU, output under save_dir, no TensorBoard or trackers.
    The example MnistDataLoader reads synthetic files (nothing downloads); any other loader reads its data_dir."""
    config = copy.deepcopy(config)
    config["n_gpu"] = 0  # CPU results are the same bit for bit on every run, which the resume test needs
    config.setdefault("trainer", {}).update(
        epochs=EPOCHS, len_epoch=BATCHES_PER_EPOCH, save_dir=str(save_dir), save_period=1, keep_last=None,
        tensorboard=False, trackers=[], compile=False, early_stop=0)
    args = config.setdefault("data_loader", {}).setdefault("args", {})
    if "batch_size" in args:
        args["batch_size"] = min(args["batch_size"], MAX_BATCH_SIZE)
    if "num_workers" in args or takes_num_workers(config["data_loader"].get("type")):
        args["num_workers"] = 0  # worker processes take longer to start than these few batches to read
    if config["data_loader"].get("type") == "MnistDataLoader":
        args.update(data_dir=str(mnist_dir), download=False)
    return config


def takes_num_workers(loader_type):
    """Whether the configured loader class has a num_workers argument (False when it cannot be found: the
    dry check in test_config_fits.py then says why)."""
    try:
        import data_loader.data_loaders as module_data

        return accepts_keyword(getattr(module_data, loader_type), "num_workers")
    except Exception:
        return False


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """Batches this small are not worth sharing out: on a busy machine a pool of threads waits more than it
    works (train.py and test.py here get OMP_NUM_THREADS=1 for the same reason). Set OMP_NUM_THREADS to choose."""
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def in_project_folder(monkeypatch):
    """Relative paths in config.json (data_dir) mean what they mean to train.py run from the project folder,
    wherever pytest was started."""
    monkeypatch.chdir(PROJECT)


@pytest.fixture(scope="session")
def mnist_dir(tmp_path_factory):
    """Small synthetic MNIST files (600 training, 200 test images), for the example MnistDataLoader only."""
    return write_synthetic_mnist(tmp_path_factory.mktemp("mnist"), n_train=600, n_test=200)


@pytest.fixture(scope="session")
def project_config():
    """config.json as a dict."""
    try:
        return json.loads(CONFIG.read_text())
    except (OSError, ValueError) as err:
        pytest.fail(f"config.json cannot be read: {err}", pytrace=False)


@pytest.fixture
def small_config(project_config, tmp_path, mnist_dir):
    """config.json made small (see shrink), as a dict; runs go to tmp_path/saved."""
    return shrink(project_config, tmp_path / "saved", mnist_dir)


def write_config(config, path):
    path.write_text(json.dumps(config, indent=2))
    return path


def run_script(script, *args, timeout=300):
    """Run train.py or test.py as a user would, from the project folder; on failure, fail with its last lines."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    command = [sys.executable, script, *map(str, args)]
    result = subprocess.run(command, cwd=PROJECT, capture_output=True, text=True, timeout=timeout, env=env)
    if result.returncode != 0:  # its one-line error when it printed one, else the end of its output
        lines = (result.stdout + result.stderr).strip().splitlines()
        shown = "\n".join([line for line in lines if line.startswith("error: ")] or lines[-8:])
        pytest.fail(f"python {' '.join(command[1:])} exited with {result.returncode}:\n{shown}", pytrace=False)
    return result
