"""Weights in and out of a plain model: unwrapping DDP/compile, checkpoint keys without wrapper prefixes, and
loading with a one-line refusal of another architecture. Reading checkpoint files: runs/checkpoint_file.py."""

import torch

from utils.errors import UserError

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


def load_weights(model, state_dict, path):
    """Load a checkpoint's weights into the plain `model`; weights of another architecture are refused, naming
    the keys that differ."""
    model.load_state_dict(checked_weights(model, state_dict, path))


def checked_weights(model, state_dict, path):
    """`state_dict` with `model`'s key names, or a UserError naming the keys and shapes that differ (a sharded
    model's state_dict holds DTensors: their shapes are the full ones)."""
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
    return state_dict


def _few(names, limit=4):
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")
