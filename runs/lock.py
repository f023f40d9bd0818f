"""One owner per run folder: a POSIX record lock on <run folder>/.lock (docs/restarts.md: One owner)."""
import contextlib
import fcntl
import os
import socket
import struct
import time
from datetime import datetime
from pathlib import Path

from utils.errors import UserError

LOCK_NAME = ".lock"
# resolved lock path -> open descriptor, for the locks this process holds. Closing *any* descriptor of a lock
# file drops the process's lock on it (POSIX), so this process never opens a file it holds.
_held = {}


class RunBusy(UserError):
    """Another live job holds the run folder."""


def acquire(folder, wait=0.0):
    """Hold `folder`'s lock until `release` or this process's death; RunBusy when another job still holds it
    after `wait` seconds of retrying (a restarted torchrun group waits for the old one to be gone)."""
    path = _lock_path(folder)
    if path in _held:
        return
    deadline = time.monotonic() + wait
    while (fd := _try_lock(path)) is None:
        if time.monotonic() >= deadline:
            raise RunBusy(f"run folder {Path(folder)} is in use by {_describe(path)}; wait for that job to "
                          "end (or stop it), or choose another --run_id")
        time.sleep(0.2)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"host {socket.gethostname()} pid {os.getpid()} since "
                  f"{datetime.now().isoformat(timespec='seconds')}\n".encode(), 0)
    _held[path] = fd


def check_free(folder):
    """Refuse, by looking alone (no file made, nothing locked), a run folder another live job holds or whose lock
    file could not be written: a start says so before it builds anything. `acquire` decides in the end."""
    folder = Path(folder)
    seen = holder_seen(folder)
    if seen is not None and not seen.startswith("this process"):
        raise RunBusy(f"run folder {folder} is in use by {seen}; wait for that job to end (or stop it), or choose "
                      "another --run_id")
    if folder.is_dir() and not os.access(folder, os.W_OK):
        why = "Read-only file system" if os.statvfs(folder).f_flag & os.ST_RDONLY else "Permission denied"
        raise UserError(f"cannot take run folder {folder}: its lock file cannot be written ({why}); copy the run "
                        "somewhere writable and resume it there")


def _try_lock(path):
    """A descriptor holding the lock on the file now at `path`, or None when another process holds it."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as err:  # a read-only or foreign folder: no job can own it, this one included
        raise UserError(f"cannot take run folder {path.parent}: its lock file cannot be written "
                        f"({err.strerror}); copy the run somewhere writable and resume it there") from None
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if os.fstat(fd).st_ino == os.stat(path).st_ino:
            return fd
    except FileNotFoundError:  # released (and removed) between our open and our lock
        pass
    except OSError:
        os.close(fd)
        return None
    os.close(fd)  # we locked a file its holder had just removed: try the new one
    return _try_lock(path)


def held_here(folder):
    """Whether this process holds `folder`'s lock."""
    return _lock_path(folder) in _held


def check_still_held(folder):
    """Before a write by the holder: its lock file removed (a cleanup of dot files) lets a second job lock a
    new one, so this job stops rather than write beside it. A folder this process does not hold is not checked."""
    path = _lock_path(folder)
    fd = _held.get(path)
    try:
        same = fd is None or os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        same = False
    if not same:
        raise RunBusy(f"the lock file of run folder {Path(folder)} was removed while this job held it, so another "
                      "job may own the run now; this job stops without writing: run it again to continue the run")


def release(folder):
    """Let go of `folder`; the lock file goes too, so a folder left alone looks as it did."""
    path = _lock_path(folder)
    fd = _held.pop(path, None)
    if fd is not None:
        with contextlib.suppress(FileNotFoundError):  # ours was removed: the file there now is another job's
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                path.unlink()  # before closing: a waiting job then locks a fresh file, never this one
        os.close(fd)


def release_all():
    for path in list(_held):
        release(path.parent)


def holder(folder):
    """Who holds `folder`'s lock ("host H pid P since T"), or None when no live process does."""
    path = _lock_path(folder)
    if path in _held:
        return f"this process (pid {os.getpid()})"
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return None  # nobody else holds it; closing below lets it go again
    except OSError:
        return _describe(path)
    finally:
        os.close(fd)


def holder_seen(folder):
    """Who holds `folder`'s lock, or None: asked of the kernel (F_GETLK) without taking the lock even for a moment,
    so a reader (compare.py) never makes a job starting at that instant find its run busy."""
    path = _lock_path(folder)
    if path in _held:
        return f"this process (pid {os.getpid()})"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:  # no lock file: no job holds the run
        return None
    try:
        query = struct.pack(_FLOCK, fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)  # the whole file, as lockf takes it
        lock_type = struct.unpack(_FLOCK, fcntl.fcntl(fd, fcntl.F_GETLK, query))[0]
    except OSError:
        return None
    finally:
        os.close(fd)
    return None if lock_type == fcntl.F_UNLCK else _describe(path)


_FLOCK = "hhqqi"  # Linux's struct flock: type, whence, start, len, pid


def _describe(path):
    try:
        return path.read_text(encoding="utf-8").strip() or "another process"
    except OSError:
        return "another process"


def _lock_path(folder):
    return (Path(folder) / LOCK_NAME).resolve()
