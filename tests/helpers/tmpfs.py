"""A real full or read-only disk for a test: a small tmpfs mounted for the test's time (root only)."""
import contextlib
import subprocess

import pytest


@contextlib.contextmanager
def tmpfs(path, size, read_only=False):
    """A small filesystem of its own at `path` (root only): a full disk or a read-only one, for real."""
    path.mkdir()
    options = f"size={size}" + (",ro" if read_only else "")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.decode().strip()}); needs root")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def remount_read_only(path):
    """Make the tmpfs at `path` read-only from now on, with what was written there before."""
    subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True)
