"""Reading a run folder: its checkpoints, the newest intact one (seen as `recover` will leave it), whether it is
a run's at all, and the commands that continue it. Writing belongs to the run (runs/run.py)."""
import logging
import os
import shlex
import shutil
from contextlib import suppress
from pathlib import Path

from runs import lock as run_lock
from runs.checkpoint_file import load_checkpoint
from runs.files import EPOCH_FILE, EPOCH_GLOB, LATEST, ORIGIN_FILE, RUN_UID
from runs.identity import belongs, folder_uid
from runs.journal import as_recovered
from utils.atomic import SaveFailed
from utils.errors import UserError


def epoch_checkpoints(folder):
    """[(epoch, path)] of the checkpoint-epoch<N>.pth files in `folder`, oldest first; other files ignored."""
    return sorted((int(m.group(1)), p) for p in Path(folder).glob(EPOCH_GLOB) if (m := EPOCH_FILE.fullmatch(p.name)))


def holds_checkpoints(folder):
    return (Path(folder) / LATEST).is_file() or bool(epoch_checkpoints(folder))


def newest_intact(folder, log=None):
    """(checkpoint, path) of the most advanced checkpoint in `folder` that loads and is this run's, or (None, None).
    A save a kill interrupted after its commit point counts as done (the owner's `recover` finishes it). A broken
    newest file is passed over with a warning, so a requeued job continues from what survived instead of failing
    forever; so is another run's checkpoint (its run_uid is not the folder's), never adopted with its config."""
    folder = Path(folder)
    pending = as_recovered(folder)  # name -> the file that will hold it
    epochs = {path.name for _, path in epoch_checkpoints(folder)} | {n for n in pending if EPOCH_FILE.fullmatch(n)}
    # model_latest.pth is part of every save, so it is the newest; then the epochs, newest first
    names = [LATEST] + sorted(epochs, key=lambda n: int(EPOCH_FILE.fullmatch(n).group(1)), reverse=True)
    broken, foreign, checkpoint, path, uid = [], [], None, None, folder_uid(folder)
    for name in names:
        source = pending.get(name, folder / name)
        if not source.is_file():
            continue
        try:
            found = load_checkpoint(source, full=False)  # a sharded one: its folder checked, not read
        except UserError:
            broken.append(name)
            continue
        if belongs(found, uid):
            checkpoint, path = found, folder / name
            break
        foreign.append(name)
    if log is not None:
        where = _resumed_from(checkpoint, path)
        if broken:
            log.append((logging.WARNING, f"Warning: {', '.join(broken)} in {folder} is truncated or corrupt; {where}"))
        if foreign:
            log.append((logging.WARNING, f"Warning: {', '.join(foreign)} in {folder} belongs to another run (its "
                                         f"{RUN_UID} is not the one in {ORIGIN_FILE}), so it is skipped; {where}"))
    return checkpoint, path


def _resumed_from(checkpoint, path):
    if checkpoint is None:
        return "no intact checkpoint is left: starting afresh"
    return f"resuming from {path.name} (epoch {checkpoint['epoch']}, step {checkpoint.get('global_step', 0)}); " \
        "the steps after it are trained again"


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
    return " ".join([launcher(), "train.py -r", quote(Path(folder) / LATEST), *more])


def launcher():
    """How this process was launched: python, or torchrun with its process counts."""
    world, local = os.environ.get("WORLD_SIZE"), os.environ.get("LOCAL_WORLD_SIZE", "1")
    return "python" if world is None else f"torchrun --nproc_per_node={local}" + (
        "" if world == local else f" --nnodes={int(world) // int(local)} <your rendezvous options>")
