"""A run folder's lock held by another live process, as a second job would hold it."""
import subprocess
import sys
from contextlib import contextmanager

from tests.helpers.paths import REPO

HOLD = ("import sys, time; from runs import lock; lock.acquire(sys.argv[1]); print('held', flush=True); "
        "time.sleep(60)")


@contextmanager
def lock_held_elsewhere(folder):
    """`folder`'s lock, taken by another process for the length of the block; yields that process."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        yield holder
    finally:
        holder.kill()
        holder.wait()


SQLITE_LOCK = ("import sqlite3, sys, time; db = sqlite3.connect(sys.argv[1], isolation_level=None); "
               "db.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); time.sleep(float(sys.argv[2])); "
               "db.execute('COMMIT')")


def sqlite_locked_for(path, seconds):
    """Another process (a backup, a dashboard's long read) holding the SQLite file `path` exclusively for
    `seconds`: returned once it holds the lock; wait() on it for the lock's end."""
    holder = subprocess.Popen([sys.executable, "-c", SQLITE_LOCK, str(path), str(seconds)], stdout=subprocess.PIPE,
                              text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder
