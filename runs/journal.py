"""Saves that commit as a whole: each file is written under a pending name, then one journal names the renames,
then they are done (docs/checkpoints.md, Saving). After a kill at any moment `recover` leaves the folder
before or after the save; `as_recovered` shows it so to a reader that does not hold the lock."""
import json
import os
from pathlib import Path

from runs import lock as run_lock
from utils import atomic  # atomic.atomic_write_all: the seam a fault-injection test patches
from utils.atomic import SaveFailed, fsync_dir

JOURNAL = ".commit.json"
PENDING = ".pending"  # suffix of a group's files until they are renamed into place


def write_files(folder, files, hint="free space, then run the same command again"):
    """Replace each (name, bytes) of `files` in `folder`, all or none; a full disk is SaveFailed (`hint`: what
    to do then). Only the run's owner writes: a lock lost since the start is refused first."""
    folder = Path(folder)
    run_lock.check_still_held(folder)
    needed = sum(len(data) for _, data in files)
    items = [(name, lambda handle, d=data: handle.write(d)) for name, data in files]
    if len(items) == 1:  # one rename is atomic already: no journal
        return atomic.atomic_write_all([(folder / name, write) for name, write in items], needed=needed, hint=hint)
    pending = {name: f".{name}{PENDING}" for name, _ in items}
    try:
        atomic.atomic_write_all([(folder / pending[name], write) for name, write in items], needed=needed, hint=hint,
                         shown=list(pending))
    except SaveFailed:
        _drop_pending(folder)  # nothing was committed: the pending files are garbage
        raise
    journal = json.dumps({"rename": pending}).encode()
    atomic.atomic_write_all([(folder / JOURNAL, lambda handle: handle.write(journal))], hint=hint)  # the commit point
    recover(folder)


def recover(folder):
    """Finish a commit whose journal was written, or drop an unfinished one. Only the run's owner (the lock
    holder) calls this, before it writes anything."""
    folder = Path(folder)
    for name, pending in _committed_renames(folder).items():
        if (folder / pending).exists():
            os.replace(folder / pending, folder / name)
    if (folder / JOURNAL).exists():
        fsync_dir(folder)
        (folder / JOURNAL).unlink()
    _drop_pending(folder)


def as_recovered(folder):
    """{name: the path that holds it now} for each file a written journal still has to rename: what `recover`
    will put under that name. A reader sees the folder as the owner will, without changing it."""
    folder = Path(folder)
    return {name: folder / pending for name, pending in _committed_renames(folder).items()
            if (folder / pending).exists()}


def _committed_renames(folder):
    """The journal's renames, each a plain file name inside `folder` (a journal naming anything else is not
    ours: nothing outside the folder is ever moved)."""
    try:
        renames = json.loads((folder / JOURNAL).read_text())["rename"]
    except (OSError, ValueError, KeyError, TypeError):  # none, or not ours: treat it as uncommitted
        return {}
    if not isinstance(renames, dict):
        return {}
    return {name: pending for name, pending in renames.items()
            if _plain_name(name) and _plain_name(pending) and pending == f".{name}{PENDING}"}


def _plain_name(name):
    return isinstance(name, str) and name not in ("", ".", "..") and Path(name).name == name


def _drop_pending(folder):
    for stale in Path(folder).glob(f".*{PENDING}"):
        stale.unlink(missing_ok=True)
