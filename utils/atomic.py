"""The one way files are replaced: write a temp file beside the target, fsync, rename.

A crash at any moment leaves either the old file or the new one, never a
half-written file under the real name. Checkpoints, config.json, metrics.csv
and test results all go through `atomic_write`.
"""
import os
from pathlib import Path


def atomic_write(path, write, binary=True):
    """Call `write(handle)` on a temp file in `path`'s folder, then move it over `path`."""
    atomic_write_all([(path, write)], binary)


def atomic_write_all(items, binary=True):
    """Replace every (path, write) of `items`, or none of them.

    All temp files are written (and fsynced) first, and renamed only when each
    succeeded: a full disk midway leaves every file as it was.
    """
    folders = {Path(path).parent for path, _ in items}
    for folder in folders:
        _remove_stale_temps(folder)
    temps = []
    try:
        for path, write in items:
            path = Path(path)
            tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
            temps.append(tmp)
            text_mode = {} if binary else {"encoding": "utf-8", "newline": ""}
            with tmp.open("wb" if binary else "w", **text_mode) as handle:
                write(handle)
                handle.flush()
                os.fsync(handle.fileno())
        for tmp, (path, _) in zip(temps, items, strict=True):
            os.replace(tmp, path)
    finally:
        for tmp in temps:
            tmp.unlink(missing_ok=True)
    for folder in folders:
        _fsync_dir(folder)


def _remove_stale_temps(folder):
    """Delete temp files whose writer died mid-write (SIGKILL, OOM): never read, and as big as a checkpoint."""
    if os.name != "posix":  # os.kill(pid, 0) only asks on POSIX; elsewhere it would kill
        return
    for tmp in folder.glob(".*.tmp*"):
        pid = tmp.name.rpartition(".tmp")[2]
        if pid.isdigit() and not _process_alive(int(pid)):
            tmp.unlink(missing_ok=True)


def _process_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, but someone else's
        return True
    return True


def _fsync_dir(folder):
    # makes the rename itself durable; not every platform can open a folder
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
