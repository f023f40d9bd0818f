"""Every `trainer.*` option in one table: name, default, check. The README's table mirrors it.

`read_trainer_options(section)` is the one place that reads the section: it
refuses bad values and near-miss spellings, fills in defaults, and returns a
namespace the trainer, train.py and test.py read from. Keys it does not know
and that are not near misses belong to the user's own trainer and pass through.
"""
import re
from types import SimpleNamespace

from logger.trackers.specs import check_trackers
from utils.config_check import is_int, is_number, refuse_near_misses
from utils.errors import UserError

REQUIRED = object()
DURATION_UNITS = {"s": 1, "min": 60, "h": 3600}


def _positive_int(v):
    return is_int(v) and v > 0


def _bool(v):
    return isinstance(v, bool)


def _monitor(v):
    parts = v.split() if isinstance(v, str) else []
    return v == "off" or (len(parts) == 2 and parts[0] in ("min", "max"))


def _optional_positive_int(v):
    return v is None or _positive_int(v)


# name: (default, test, what the value must be)
TRAINER_OPTIONS = {
    "epochs": (REQUIRED, _positive_int, "a positive integer"),
    "save_dir": ("saved/", lambda v: isinstance(v, str) and v != "", "a folder path"),
    "save_period": (1, _positive_int, "a positive integer"),
    "verbosity": (2, lambda v: is_int(v) and v in (0, 1, 2), "0, 1 or 2"),
    "monitor": ("off", _monitor, "'off' or 'min <metric>' / 'max <metric>', e.g. 'min val_loss'"),
    "early_stop": (0, lambda v: is_int(v) and v >= 0, "a non-negative integer (0 turns it off)"),
    "tensorboard": (False, _bool, "true or false"),
    "tensorboard_images": (False, _bool, "true or false"),
    "tensorboard_histograms": (False, _bool, "true or false"),
    # experiment trackers beside TensorBoard; an unknown name is refused with a did-you-mean by the test itself
    "trackers": ([], check_trackers, "a list of tracker names or {\"type\", \"args\"} sections"),
    "len_epoch": (None, _optional_positive_int, "a positive integer or null"),
    "log_step": (None, _optional_positive_int, "a positive integer or null"),
    "keep_last": (None, _optional_positive_int, "a positive integer or null"),
    "amp": (False, lambda v: v in ("bf16", "fp16", False, None), "\"bf16\", \"fp16\" or false"),
    "accumulate_steps": (1, _positive_int, "a positive integer"),
    "clip_grad_norm": (None, lambda v: v is None or (is_number(v) and v > 0), "a positive number or null"),
    "compile": (False, _bool, "true or false"),
    "deterministic": (False, _bool, "true or false"),
    "checkpoint_interval": (None, lambda v: v is None or _positive_int(v) or (isinstance(v, str) and bool(
        parse_duration(v))), "null, a number of optimizer steps, or a duration such as \"30s\" or \"10min\""),
}


def read_trainer_options(section, source="config"):
    """The trainer section as a namespace with every option set; a UserError for bad input."""
    if not isinstance(section, dict):
        raise UserError(f"{source}: 'trainer' must be an object, e.g. {{\"epochs\": 10, \"save_dir\": \"saved/\"}}")
    refuse_near_misses(section, TRAINER_OPTIONS, "trainer", source)
    values = {}
    for name, (default, test, expected) in TRAINER_OPTIONS.items():
        if name not in section:
            if default is REQUIRED:
                raise UserError(f"{source} has no 'trainer.{name}'; add it to the trainer section")
            values[name] = default
        elif not test(section[name]):
            raise UserError(f"{source}: trainer.{name} must be {expected}, got {section[name]!r}; "
                            f"fix it in the config file or with -o trainer.{name}=...")
        else:
            values[name] = section[name]
    return SimpleNamespace(**values)


def parse_duration(text):
    """"30s", "10min", "1.5h" -> seconds; None for anything else."""
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(s|min|h)\s*", str(text))
    return float(found.group(1)) * DURATION_UNITS[found.group(2)] if found else None
