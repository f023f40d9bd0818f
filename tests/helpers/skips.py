"""Skips that say why and what to do: tests that cannot mean anything as root, tests that need PostgreSQL's
binaries, tests that need the real MNIST files (CI has all three)."""
import os

import pytest

from data_loader.mnist import MNIST_FILES
from tests.helpers.paths import REAL_MNIST
from tests.helpers.postgres import NO_POSTGRESQL, postgresql_bin_dir

skip_as_root = pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")

needs_postgresql = pytest.mark.skipif(postgresql_bin_dir() is None, reason=NO_POSTGRESQL)

MISSING_MNIST = [name for name in MNIST_FILES if not (REAL_MNIST / name).is_file()]
needs_real_mnist = pytest.mark.skipif(
    bool(MISSING_MNIST), reason=f"real MNIST not found: {REAL_MNIST} lacks {', '.join(MISSING_MNIST)} (place the "
                                "files there, or link a folder holding them to data/MNIST, to run this test)")
