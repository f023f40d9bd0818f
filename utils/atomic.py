"""The one way files are replaced: temp file beside the target, fsync, rename (docs/checkpoints.md: Saving)."""
import contextlib
import errno
import os
import shutil
import socket
from pathlib import Path

from utils.errors import UserError

HOST = socket.gethostname()  # in temp names: a pid says whether its writer lives only on the writer's host


class SaveFailed(UserError):
    exit_code = 74  # sysexits' EX_IOERR: the run's state could not be written (docs/checkpoints.md: exit codes)


def atomic_write(path, write, binary=True, hint=""):
    """Call `write(handle)` on a temp file in `path`'s folder, then move it over `path`."""
    atomic_write_all([(path, write)], binary, hint=hint)


def atomic_write_all(items, binary=True, needed=None, hint="", shown=None):
    """Replace every (path, write) of `items`, or none of them: all temp files are written and fsynced before
    any is renamed, so a full disk midway leaves every file as it was."""
    folders = {Path(path).parent for path, _ in items}
    for folder in folders:
        _remove_stale_temps(folder)
    temps = [Path(path).with_name(f".{Path(path).name}.tmp{os.getpid()}.{HOST}") for path, _ in items]
    text_mode = {} if binary else {"encoding": "utf-8", "newline": ""}
    try:
        for tmp, (_, write) in zip(temps, items, strict=True):
            with tmp.open("wb" if binary else "w", **text_mode) as handle:
                write(handle)
                handle.flush()
                os.fsync(handle.fileno())  # the data is on disk before the rename makes it visible
        for tmp, (path, _) in zip(temps, items, strict=True):
            os.replace(tmp, path)
    except OSError as err:
        raise save_failed(err, [Path(p) for p, _ in items], needed, hint, shown) from None
    finally:
        for tmp in temps:
            with contextlib.suppress(OSError):  # a read-only folder refuses even this: keep the error above
                tmp.unlink(missing_ok=True)
    for folder in folders:
        fsync_dir(folder)


def save_failed(err, paths, needed=None, hint="", shown=None):
    folder = paths[0].parent
    shown = shown or [p.name for p in paths]
    why = "no space left on the device" if err.errno in (errno.ENOSPC, errno.EDQUOT) else err.strerror
    try:
        free = f"{shutil.disk_usage(folder).free / 1e6:.2f} MB are free"
    except OSError:
        free = "free space unknown"
    need = f"it needs {needed / 1e6:.2f} MB, " if needed and needed >= 10_000 else ""
    return SaveFailed(f"could not save {', '.join(shown)} in {folder}: {why} ({need}{free}); "
                      f"the files there are unchanged{': ' + hint if hint else ''}")


def _remove_stale_temps(folder):
    """Delete temp files whose writer died mid-write (SIGKILL, OOM): never read, and as big as a checkpoint.
    A live process's (test.py beside a training) is left alone, and so is another host's (shared storage)."""
    if os.name != "posix":  # os.kill(pid, 0) only asks on POSIX; elsewhere it would kill
        return
    for tmp in folder.glob(".*.tmp*"):
        pid = tmp.name.rpartition(".tmp")[2].removesuffix(f".{HOST}")  # another host's: not digits, kept
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:  # its writer is dead
            tmp.unlink(missing_ok=True)
        except PermissionError:  # alive, but someone else's
            pass


def fsync_dir(folder):
    # makes the rename itself durable; not every platform can open a folder
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
