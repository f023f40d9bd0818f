"""Reading a checkpoint file safely: `torch.load(weights_only=True)`, and one line for a file that is missing,
truncated, exported, foreign or unsafe."""
import pickle
import re
import zipfile
from pathlib import Path

import torch

from runs.files import EPOCH_PATTERN, LATEST
from runs.shard_folders import check_shards, shards_of, with_full_parts
from utils.errors import UserError
from utils.export.formats import format_of


def load_checkpoint(path, map_location="cpu", full=True):
    """Load a checkpoint safely (weights_only=True); a bad file is a UserError. A sharded checkpoint's folder is
    checked, and with `full` read whole into the single-file format; without it the .pth comes as saved, its
    `shards` record naming the folder (what a sharded run loads its own slices from)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist; pass the path of a .pth file under saved/models/ with -r")
    if format_of(path) is not None:  # a zip archive too, which torch.load would call corrupt
        raise UserError(f"{path} is a model exported by export.py, not a checkpoint; pass the .pth it was exported "
                        f"from (checkpoint.path in {path.name}.json)")
    if not _looks_like_torch_save(path):
        raise UserError(f"{path} is not a checkpoint (not a file written by torch.save); "
                        f"pass a .pth file written by train.py, e.g. {LATEST}")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise UserError(f"checkpoint {path} holds objects that the safe loader (weights_only=True) "
                        f"refuses ({_refusal_reason(err)}); it was not loaded: use only checkpoints "
                        "written by this template") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as err:
        raise UserError(f"checkpoint {path} is truncated or corrupt ({type(err).__name__}); "
                        f"resume from another checkpoint, e.g. {LATEST} or an earlier {EPOCH_PATTERN}") from None
    sharded = shards_of(checkpoint)
    parts = set(checkpoint) | set((sharded or {}).get("parts") or ()) if isinstance(checkpoint, dict) else set()
    if not {"state_dict", "config", "epoch"} <= parts:
        raise UserError(f"{path} is not a checkpoint of this template (it lacks state_dict, config "
                        "or epoch); pass a file written by train.py")
    if sharded is None:
        return checkpoint
    check_shards(checkpoint, path)
    return with_full_parts(checkpoint, path) if full else checkpoint


def _looks_like_torch_save(path):
    """torch.save writes a zip archive (or, in the legacy format, a pickle)."""
    with path.open("rb") as handle:
        head = handle.read(4)
    return not head or head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"  # empty: truncated


def _refusal_reason(err):
    # torch's message is long and advises retrying with weights_only=False, which must not be
    # followed here: report only what was refused
    if found := re.search(r"GLOBAL ([\w.]+)", str(err)):
        return f"it would load the global {found.group(1)}"
    found = re.search(r"WeightsUnpickler error:\s*([^\n]+)", str(err))
    return found.group(1).strip().rstrip(".") if found else "unsupported content"
