"""Shared fixtures: synthetic MNIST, the real config shrunk for tests, and entry-point runners."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.synthetic_mnist import write_synthetic_mnist

REPO = Path(__file__).resolve().parent.parent
# the real files: in data/MNIST/raw, or directly in a folder linked to data/MNIST (both layouts the README allows)
REAL_MNIST = next((folder for folder in (REPO / "data" / "MNIST" / "raw", REPO / "data" / "MNIST")
                   if (folder / "train-images-idx3-ubyte").is_file()), REPO / "data" / "MNIST" / "raw")
# a new project's own suite (new_project.py makes it the copy's tests/); test_new_project_suite.py runs it in a copy
collect_ignore = ["project"]
# one thread in the tests and in every run they start: tiny batches need no more, and a count that followed
# the machine's load (utils/cpu_threads.py) would change the order of sums between a run and its resume
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def synthetic_data_dir(tmp_path_factory):
    """A data_dir holding small synthetic MNIST files (600 train, 200 test)."""
    return write_synthetic_mnist(tmp_path_factory.mktemp("mnist"), n_train=600, n_test=200)


@pytest.fixture
def one_thread():
    """Tiny batches on a small shared machine: a pool of torch threads waits more than it works."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def shrink_config(tmp_path, data_dir, **trainer):
    """config.json made small: synthetic data, 2 epochs, output under tmp_path.

    Keyword arguments override trainer keys. Returns the config as a dict.
    """
    config = json.loads((REPO / "config.json").read_text())
    config["data_loader"]["args"].update(data_dir=str(data_dir), batch_size=64, download=False)
    config["trainer"].update(epochs=2, save_dir=str(tmp_path / "saved"), verbosity=2, tensorboard=False)
    config["trainer"].update(trainer)
    return config


def write_config(tmp_path, config, name="config.json"):
    path = Path(tmp_path) / name
    path.write_text(json.dumps(config, indent=2))
    return path


@pytest.fixture
def small_config(tmp_path, synthetic_data_dir):
    """Path of a shrunk config (see shrink_config) written into tmp_path."""
    return write_config(tmp_path, shrink_config(tmp_path, synthetic_data_dir))


def run_script(script, *args, cwd=REPO, timeout=300, env=None):
    """Run one of the entry points (train.py, test.py, new_project.py) as a user would."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run([sys.executable, str(Path(cwd) / script), *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, env=full_env)


def run_dirs(save_dir):
    """The run folders under <save_dir>/models/<name>/."""
    return sorted(p for p in Path(save_dir, "models").glob("*/*") if p.is_dir())


def train_in_process(*argv):
    """Run train.py's main in this process (faster than a subprocess); return the ConfigParser."""
    import train

    config = train.parse_args([str(a) for a in argv])
    train.main(config)
    return config
