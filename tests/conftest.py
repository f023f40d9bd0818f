"""Fixtures and hooks only: synthetic MNIST, the real config shrunk for tests, and the shared setups a few modules
use (the own-data example, the elastic runs, a PostgreSQL server). Shared code lives in tests/helpers/."""
import os

import pytest

from tests.helpers.configs import shrink_config, write_config
from tests.synthetic_mnist import write_synthetic_mnist

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


@pytest.fixture
def small_config(tmp_path, synthetic_data_dir):
    """Path of a shrunk config (see shrink_config) written into tmp_path."""
    return write_config(tmp_path, shrink_config(tmp_path, synthetic_data_dir))


@pytest.fixture
def example_loader(monkeypatch):
    """The own-dataset example's loader of docs/customizing.md, nameable in the config for this test only."""
    from tests.helpers.own_data import add_example_loader

    return add_example_loader(monkeypatch)


@pytest.fixture(scope="module")
def elastic_setup(tmp_path_factory):
    """(folder, config) of the elastic tests (tests/helpers/elastic.py), once per module."""
    from tests.helpers.elastic import elastic_config

    return elastic_config(tmp_path_factory.mktemp("elastic"))


@pytest.fixture(scope="module")
def reference(elastic_setup):
    """The final weights of an uninterrupted 2-rank run of elastic_setup's config."""
    from tests.helpers.elastic import reference_weights

    return reference_weights(*elastic_setup)


@pytest.fixture(scope="module")
def postgres():
    """A throwaway PostgreSQL server (tests/helpers/postgres.py): a function that creates a fresh database and
    returns its postgresql:// URL. Skips, with what to install, where the binaries are missing."""
    from tests.helpers.postgres import postgres_server

    with postgres_server() as new_database:
        yield new_database
