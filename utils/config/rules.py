"""Every config value the template reads, in one table: dotted key -> Rule(default, test, expected).
The README's trainer table mirrors the `trainer.*` rows. A key the config leaves out is checked only if REQUIRED."""
import re
from collections import namedtuple
from numbers import Real

from utils.config.ema_option import check_ema
from utils.errors import UserError
from utils.lookup import did_you_mean
from utils.sharding import STRATEGIES
from utils.tracker_specs import check_trackers

Rule = namedtuple("Rule", "default test expected")
REQUIRED = object()  # the config must set it
UNSET = object()  # the template passes nothing when the config leaves it out


def is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value):
    return isinstance(value, Real) and not isinstance(value, bool)


def parse_duration(text):
    """"30s", "10min", "1.5h" -> seconds; None for anything else."""
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(s|min|h)\s*", str(text))
    return float(found.group(1)) * {"s": 1, "min": 60, "h": 3600}[found.group(2)] if found else None


def _positive_int(v):
    return is_int(v) and v > 0


def _optional_positive_int(v):
    return v is None or _positive_int(v)


def _bool(v):
    return isinstance(v, bool)


def _monitor(v):
    parts = v.split() if isinstance(v, str) else []
    return v == "off" or (len(parts) == 2 and parts[0] in ("min", "max"))


def _profile_window(v):
    """true, false, or {"wait", "warmup", "active"} (any of them; the rest default): counts of batches."""
    if isinstance(v, bool):
        return True
    keys = ("wait", "warmup", "active")
    return isinstance(v, dict) and set(v) <= set(keys) and all(is_int(v[k]) and v[k] >= 0 for k in v) \
        and v.get("active", 1) > 0


def _interval(v):
    return v is None or _positive_int(v) or (isinstance(v, str) and bool(parse_duration(v)))  # "0s": no


def _strategy(v):
    """"ddp" or "fsdp"; a near miss is refused with the name it resembles (utils/sharding.py)."""
    if v in STRATEGIES:
        return True
    close = did_you_mean(v, STRATEGIES) if isinstance(v, str) else []
    if close:
        raise UserError(f"config: unknown trainer.strategy {v!r}; did you mean {close[0]!r}? "
                        f"Choose one of: {', '.join(map(repr, STRATEGIES))}")
    return False


TRUE_OR_FALSE = "true or false"
RULES = {
    "seed": Rule(UNSET, lambda v: v is None or is_int(v), "an integer or null (null: the run picks one)"),
    "n_gpu": Rule(UNSET, lambda v: is_int(v) and v >= 0, "a non-negative integer"),
    "data_loader.args.batch_size": Rule(UNSET, _positive_int, "a positive integer"),
    "data_loader.args.num_workers": Rule(UNSET, lambda v: v is None or (is_int(v) and v >= 0),
                                         "a non-negative integer, or null to pick from the cores"),
    "data_loader.args.validation_split": Rule(
        UNSET, lambda v: (is_int(v) and v >= 0) or (is_number(v) and 0.0 <= v < 1.0),
        "a fraction in [0, 1) or a sample count"),
    "optimizer.args.lr": Rule(UNSET, lambda v: is_number(v) and v >= 0, "a non-negative number"),
    "lr_scheduler.step": Rule(UNSET, lambda v: v in ("epoch", "batch"), "\"epoch\" or \"batch\""),
    "trainer.epochs": Rule(REQUIRED, _positive_int, "a positive integer"),
    "trainer.save_dir": Rule("saved/", lambda v: isinstance(v, str) and v != "", "a folder path"),
    "trainer.save_period": Rule(1, _positive_int, "a positive integer"),
    "trainer.verbosity": Rule(2, lambda v: is_int(v) and v in (0, 1, 2), "0, 1 or 2"),
    "trainer.monitor": Rule("off", _monitor, "'off' or 'min <metric>' / 'max <metric>', e.g. 'min val_loss'"),
    "trainer.early_stop": Rule(0, lambda v: is_int(v) and v >= 0, "a non-negative integer (0 turns it off)"),
    "trainer.tensorboard": Rule(False, _bool, TRUE_OR_FALSE),
    "trainer.tensorboard_images": Rule(False, _bool, TRUE_OR_FALSE),
    "trainer.tensorboard_histograms": Rule(False, _bool, TRUE_OR_FALSE),
    # experiment trackers beside TensorBoard; the test itself refuses an unknown name with a did-you-mean
    "trainer.trackers": Rule([], check_trackers, "a list of tracker names or {\"type\", \"args\"} sections"),
    "trainer.len_epoch": Rule(None, _optional_positive_int, "a positive integer or null"),
    "trainer.log_step": Rule(None, _optional_positive_int, "a positive integer or null"),
    "trainer.keep_last": Rule(None, _optional_positive_int, "a positive integer or null"),
    "trainer.amp": Rule(False, lambda v: v in ("bf16", "fp16", False, None), "\"bf16\", \"fp16\" or false"),
    "trainer.accumulate_steps": Rule(1, _positive_int, "a positive integer"),
    "trainer.clip_grad_norm": Rule(None, lambda v: v is None or (is_number(v) and v > 0), "a positive number or null"),
    "trainer.compile": Rule(False, _bool, TRUE_OR_FALSE),
    "trainer.cpu_threads": Rule(None, _optional_positive_int, "a positive integer, or null to pick from the free "
                                                              "cores"),
    "trainer.deterministic": Rule(False, _bool, TRUE_OR_FALSE),
    "trainer.checkpoint_interval": Rule(None, _interval, "null, a number of optimizer steps, or a duration "
                                                         "such as \"30s\" or \"10min\""),
    "trainer.profile": Rule(False, _profile_window, "true, false or {\"wait\": W, \"warmup\": U, \"active\": A} "
                                                    "(batch counts, active > 0)"),
    "trainer.strategy": Rule("ddp", _strategy, "\"ddp\" (one model copy per process) or \"fsdp\" (FSDP2: "
                                               "parameters, gradients and optimizer state sharded over the ranks)"),
    "trainer.overfit_batches": Rule(None, _optional_positive_int, "a positive integer (batches) or null"),
    # an averaged model beside the trained one (trainer/ema.py); the test raises its own one-line errors
    "trainer.ema": Rule(None, check_ema, "null or {\"decay\", \"every\", \"start\", \"validate\"}"),
}
TRAINER_OPTIONS = [key.split(".", 1)[1] for key in RULES if key.startswith("trainer.")]
