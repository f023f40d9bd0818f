"""Writing and reading checkpoints: atomic files, plain data, safe loading."""
import pickle
import re
import zipfile
from pathlib import Path

import torch

from utils.errors import UserError
from utils.export.formats import format_of

# Wrappers add these to parameter names. Checkpoints hold the unwrapped model, so they have none;
# a classic checkpoint of a DataParallel model has `module.` on every key.
WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def unwrap_model(model):
    """The plain model inside DataParallel / DistributedDataParallel / torch.compile.
    Known by type, not by attribute: a user's model may own a submodule named `module`."""
    from torch._dynamo.eval_frame import OptimizedModule  # torch.compile's wrapper

    while True:
        if isinstance(model, (torch.nn.DataParallel, torch.nn.parallel.DistributedDataParallel)):
            model = model.module
        elif isinstance(model, OptimizedModule):
            model = model._orig_mod
        else:
            return model


def matching_keys(state_dict, model):
    """`state_dict` with the key names `model` expects: a wrapper prefix that *every* key carries
    (a classic DataParallel checkpoint) is dropped only when the model's own names lack it."""
    expected = set(model.state_dict())
    while set(state_dict) != expected:
        prefix = next((p for p in WRAPPER_PREFIXES if state_dict and all(k.startswith(p) for k in state_dict)), None)
        if prefix is None:
            break
        state_dict = {k[len(prefix):]: v for k, v in state_dict.items()}
    return state_dict


def load_checkpoint(path, map_location="cpu"):
    """Load a checkpoint safely (weights_only=True); a bad file is a UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist; pass the path of a .pth file under saved/models/ with -r")
    if format_of(path) is not None:  # a zip archive too, which torch.load would call corrupt
        raise UserError(f"{path} is a model exported by export.py, not a checkpoint; pass the .pth it was exported "
                        f"from (checkpoint.path in {path.name}.json)")
    if not _looks_like_torch_save(path):
        raise UserError(f"{path} is not a checkpoint (not a file written by torch.save); "
                        "pass a .pth file written by train.py, e.g. model_latest.pth")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise UserError(f"checkpoint {path} holds objects that the safe loader (weights_only=True) "
                        f"refuses ({_refusal_reason(err)}); it was not loaded: use only checkpoints "
                        "written by this template") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as err:
        raise UserError(f"checkpoint {path} is truncated or corrupt ({type(err).__name__}); "
                        "resume from another checkpoint, e.g. model_latest.pth or an earlier "
                        "checkpoint-epoch<N>.pth") from None
    if not isinstance(checkpoint, dict) or not {"state_dict", "config", "epoch"} <= set(checkpoint):
        raise UserError(f"{path} is not a checkpoint of this template (it lacks state_dict, config "
                        "or epoch); pass a file written by train.py")
    return checkpoint


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


def load_weights(model, state_dict, path):
    """Load a checkpoint's weights into the plain `model`; weights of another architecture are refused, naming
    the keys that differ."""
    state_dict = matching_keys(state_dict, model)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    reshaped = [f"{k} {tuple(state_dict[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
                if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)]
    parts = [f"{what} {_few(keys)}" for what, keys in
             [("missing", missing), ("unexpected", unexpected), ("shape differs:", reshaped)] if keys]
    if parts:
        raise UserError(f"checkpoint {path} was made for another architecture ({'; '.join(parts)}); "
                        "use a checkpoint of this arch or set arch to the one it was trained with")
    model.load_state_dict(state_dict)


def _few(names, limit=4):
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")
