"""A run folder's files: its checkpoints, the newest intact one, and saves that commit as a whole
(pending files, a journal, `recover`: docs/checkpoints.md, Saving)."""
import io
import json
import logging
import os
import re
import shlex
import shutil
from contextlib import suppress
from pathlib import Path

import torch

from runs import lock as run_lock
from runs.files import BEST, LATEST  # noqa: F401  (the names other modules import from here)
from utils.atomic import SaveFailed, atomic_write_all, fsync_dir
from utils.checkpoint import load_checkpoint
from utils.errors import UserError

JOURNAL = ".commit.json"
PENDING = ".pending"  # suffix of a group's files until they are renamed into place
EPOCH_FILE = re.compile(r"checkpoint-epoch([1-9]\d*)\.pth")  # anything else is not ours to read or prune


def epoch_checkpoints(folder):
    """[(epoch, path)] of the checkpoint-epoch<N>.pth files in `folder`, oldest first; other files ignored."""
    return sorted((int(m.group(1)), p) for p in Path(folder).glob("checkpoint-epoch*.pth")
                  if (m := EPOCH_FILE.fullmatch(p.name)))


def holds_checkpoints(folder):
    return (Path(folder) / LATEST).is_file() or bool(epoch_checkpoints(folder))


def newest_intact(folder, log=None):
    """(checkpoint, path) of the most advanced checkpoint in `folder` that loads, or (None, None). A broken newest
    file is passed over with a warning, so a requeued job continues from what survived instead of failing forever."""
    folder = Path(folder)
    # model_latest.pth is part of every save, so it is the newest; then the epochs, newest first
    candidates = [folder / LATEST] + [path for _, path in reversed(epoch_checkpoints(folder))]
    broken, checkpoint, path = [], None, None
    for candidate in (p for p in candidates if p.is_file()):
        try:
            checkpoint, path = load_checkpoint(candidate), candidate
            break
        except UserError:
            broken.append(candidate)
    if broken and log is not None:
        where = "no intact checkpoint is left: starting afresh" if checkpoint is None else \
            f"resuming from {path.name} (epoch {checkpoint['epoch']}, step {checkpoint.get('global_step', 0)}); " \
            "the steps after it are trained again"
        log.append((logging.WARNING, f"Warning: {', '.join(p.name for p in broken)} in {folder} is truncated or "
                                     f"corrupt; {where}"))
    return checkpoint, path


def save_group(folder, state, names, extra_files=(), keep_last=None):
    """Write `state` under each of `names` and each (name, bytes) of `extra_files`, as one commit."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_files(folder, [(name, buffer.getbuffer()) for name in names] + list(extra_files))
    if keep_last:
        for _, old in epoch_checkpoints(folder)[:-keep_last]:
            old.unlink(missing_ok=True)


def write_files(folder, files):
    """Replace each (name, bytes) of `files` in `folder`, all or none; a full disk is SaveFailed."""
    folder = Path(folder)
    run_lock.check_still_held(folder)
    hint = f"free space, then resume with {resume_command(folder)}"
    needed = sum(len(data) for _, data in files)
    items = [(name, lambda handle, d=data: handle.write(d)) for name, data in files]
    if len(items) == 1:  # one rename is atomic already: no journal
        return atomic_write_all([(folder / name, write) for name, write in items], needed=needed, hint=hint)
    pending = {name: f".{name}{PENDING}" for name, _ in items}
    try:
        atomic_write_all([(folder / pending[name], write) for name, write in items], needed=needed, hint=hint,
                         shown=list(pending))
    except SaveFailed:
        _drop_pending(folder)  # nothing was committed: the pending files are garbage
        raise
    journal = json.dumps({"rename": pending}).encode()
    atomic_write_all([(folder / JOURNAL, lambda handle: handle.write(journal))], hint=hint)  # the commit point
    recover(folder)


def recover(folder):
    """Finish a commit whose journal was written, or drop an unfinished one. Only the run's owner (the lock
    holder) calls this, before anything reads the folder."""
    folder = Path(folder)
    journal = folder / JOURNAL
    if journal.is_file():
        try:
            renames = json.loads(journal.read_text())["rename"]
        except (ValueError, KeyError):  # cannot happen with an atomic journal; treat it as uncommitted
            renames = {}
        for name, pending in renames.items():
            if (folder / pending).exists():
                os.replace(folder / pending, folder / name)
        fsync_dir(folder)
        journal.unlink()
    _drop_pending(folder)


def _drop_pending(folder):
    for stale in Path(folder).glob(f".*{PENDING}"):
        stale.unlink(missing_ok=True)


def missing_folders(*folders):
    """Each of `folders` and its ancestors that does not exist yet: what a start is about to make."""
    return {p for folder in map(Path, folders) for p in (folder, *folder.parents) if not p.exists()}


def drop_unsaved_run(made, folders, failure):
    """A mistake in the config or data (a UserError) ended a new run before its first checkpoint: remove
    its `folders` (run, log) that this start `made`, then the parents it made when they are empty, so
    that no half-made run is left. A run it did not make (a requeue), or a lock or disk problem, stays."""
    if not made or not isinstance(failure, UserError) or isinstance(failure, (run_lock.RunBusy, SaveFailed)) \
            or holds_checkpoints(folders[0]):
        return
    for folder in (Path(f) for f in folders if Path(f) in made):
        shutil.rmtree(folder, ignore_errors=True)  # the lock holder's own files only
        for parent in (p for p in folder.parents if p in made):
            with suppress(OSError):  # not empty: another run has begun there
                parent.rmdir()


def write_text_file(path, text):
    """A small file of the run (config.json, provenance.json, run.json) through the same checked path."""
    path = Path(path)
    write_files(path.parent, [(path.name, text.encode("utf-8"))])


def foreign_history(csv):
    """A metrics.csv that is not a run's (no epoch column): resuming beside it would overwrite it."""
    try:
        return csv.is_file() and "epoch" not in csv.open(encoding="utf-8").readline().strip().split(",")
    except (OSError, ValueError):
        return True


def quote(path):
    """A path as it must be typed in a shell."""
    return shlex.quote(str(path))


def resume_command(folder, *more):
    """The command that continues the run in `folder`, launched as this process was (torchrun included)."""
    world, local = os.environ.get("WORLD_SIZE"), os.environ.get("LOCAL_WORLD_SIZE", "1")
    launch = "python" if world is None else f"torchrun --nproc_per_node={local}" + (
        "" if world == local else f" --nnodes={int(world) // int(local)} <your rendezvous options>")
    return " ".join([launch, "train.py -r", quote(Path(folder) / LATEST), *more])


def log_dir_beside(folder, name):
    """<root>/log/<name>/<run> for a run folder <root>/models/<name>/<run>; any other folder keeps its log itself."""
    folder = Path(folder)
    if folder.parent.name == name and folder.parent.parent.name == "models":
        return folder.parent.parent.parent / "log" / name / folder.name
    return folder
