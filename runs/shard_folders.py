"""The shard folders of sharded (FSDP) checkpoints: a .pth holds every small part and, under `shards`, the name
of the folder (shards/epoch<N>-step<S>-<token>, relative to the run folder) that holds its sharded parts as
written by torch.distributed.checkpoint. Here: checking that folder, reading it whole into the single-file
format, and deleting the folders no .pth refers to (docs/checkpoints.md, Sharded checkpoints)."""
import pickle
import shutil
from pathlib import Path

import torch

from runs.files import EPOCH_PATTERN, SHARD_FOLDER, SHARDS
from runs.journal import as_recovered
from utils import safe_dcp
from utils.errors import UserError


def shards_of(checkpoint):
    """The checkpoint's shard record {"folder": name, "parts": [keys]}, or None (a single-file checkpoint)."""
    record = checkpoint.get(SHARDS) if isinstance(checkpoint, dict) else None
    return record if isinstance(record, dict) else None


def shard_folder(checkpoint, path):
    """The folder that holds the sharded parts of `checkpoint`, read from `path`; a name that is not one of
    ours (outside shards/) is a UserError."""
    name = shards_of(checkpoint).get("folder")
    if not isinstance(name, str) or not SHARD_FOLDER.fullmatch(name):
        raise UserError(f"checkpoint {path} names {name!r} as its shard folder, which is not one this template "
                        "writes; use only checkpoints written by train.py")
    return Path(path).parent / name


def check_shards(checkpoint, path):
    """A UserError unless the shard folder of `checkpoint` (from `path`) is there whole and safe to read."""
    folder = shard_folder(checkpoint, path)
    try:
        safe_dcp.check_complete(folder)
    except pickle.UnpicklingError as err:
        raise UserError(f"checkpoint {path}: its shard index {folder / safe_dcp.METADATA} holds objects the safe "
                        f"reader refuses ({err}); it was not loaded: use only checkpoints written by this "
                        "template") from None
    except (OSError, EOFError, AttributeError, ValueError, TypeError) as err:
        raise UserError(f"checkpoint {path}: its shard folder {folder} is missing or damaged ({_why(err)}); "
                        f"copy a run folder whole (the .pth files and {SHARDS}/), or resume from another "
                        f"checkpoint, e.g. an earlier {EPOCH_PATTERN}") from None


def _why(err):
    return f"{type(err).__name__}: {err.strerror}" if isinstance(err, OSError) and err.strerror else str(err)


def with_full_parts(checkpoint, path):
    """`checkpoint` in the single-file format: its sharded parts read whole from their folder, in this process
    alone (no process group), laid out as a plain model's and optimizer's state_dict()."""
    folder = shard_folder(checkpoint, path)
    try:
        whole = safe_dcp.load_full(folder)
    except pickle.UnpicklingError as err:
        raise UserError(f"checkpoint {path}: a shard in {folder} holds objects the safe loader (weights_only=True) "
                        f"refuses ({str(err).splitlines()[0][:200]}); it was not loaded: use only checkpoints "
                        "written by this template") from None
    full = {key: value for key, value in checkpoint.items() if key != SHARDS}
    full.update({key: _optimizer_keys_back(whole[key]) for key in shards_of(checkpoint)["parts"]})
    return full


def _optimizer_keys_back(state):
    """DCP stores every dict key as a string: an optimizer's state (a dict with "state" and "param_groups")
    gets its parameter indices back as ints, as torch's optimizer.state_dict() has them."""
    if isinstance(state, dict) and {"state", "param_groups"} <= set(state) and isinstance(state["state"], dict):
        return {**state, "state": {int(index): value for index, value in state["state"].items()}}
    return state


def drop_unreferenced(folder):
    """Delete each shard folder in run folder `folder` that no checkpoint there refers to (a save a kill cut
    before its commit, an epoch keep_last removed, a model_latest replaced since). Only the run's owner calls
    this; a save whose journal is written counts as done."""
    root = Path(folder) / SHARDS
    if not root.is_dir():
        return
    kept = set()
    for pth in _checkpoint_files(Path(folder)):
        kept.add(_referenced(pth))
    for found in root.iterdir():
        if found.is_dir() and f"{SHARDS}/{found.name}" not in kept and SHARD_FOLDER.fullmatch(f"{SHARDS}/{found.name}"):
            shutil.rmtree(found, ignore_errors=True)


def _checkpoint_files(folder):
    pending = as_recovered(folder)
    return [*folder.glob("*.pth"), *pending.values()]


def _referenced(pth):
    """The shard folder name a .pth refers to, or None (unreadable, or a single-file checkpoint)."""
    try:
        record = shards_of(torch.load(pth, map_location="cpu", weights_only=True))
    except Exception:  # noqa: BLE001 -- a file that does not load refers to nothing we must keep
        return None
    return record.get("folder") if record else None
