"""One run folder read for compare.py from its own files (config.json, metrics.csv, the lock, *.test.json),
without torch: what the run is set to, how far it got, its best and last values and its test results."""
import json
import math
from pathlib import Path

from runs import lock as run_lock
from runs.files import BEST, EPOCH_GLOB, HISTORY, LATEST, ORIGIN_FILE, RUN_CONFIG, test_results_file
from runs.history import DamagedHistory, read_history
from utils.config.dotted import flatten

TEST_RESULTS = tuple(test_results_file(name).name for name in (BEST, LATEST))
RUN_SIGNS = (HISTORY, ORIGIN_FILE, LATEST, BEST, run_lock.LOCK_NAME)


class BadRun(Exception):
    """A folder that cannot be shown as a run; the message says why (one line)."""


def read_run(folder):
    """A dict: run, folder, config (the run's own), state, epochs, stopped_early, best, best_epoch, monitor, last
    (the last epoch's val_* values), test (test_* values) and the config flattened to dotted keys (settings)."""
    folder = Path(folder)
    config = _read_config(folder)
    rows = _read_history(folder / HISTORY)
    mode, metric = _monitor(config)
    best, best_epoch = _best(rows, mode, metric)
    last = rows[-1] if rows else {}
    return {"run": folder.name, "folder": folder, "config": config, "settings": flatten(config),
            "state": _state(folder, config, rows, mode, metric), "epochs": int(last.get("epoch", 0)),
            "stopped_early": _stopped_early(config, rows, mode, metric),
            "monitor": metric, "best": best, "best_epoch": best_epoch,
            "last": {k: v for k, v in last.items() if k.startswith("val_")}, "test": _read_test(folder)}


def looks_like_run(folder):
    """A folder with a run's files but no config.json: half-written, or a run whose config was lost."""
    return any((Path(folder) / name).exists() for name in RUN_SIGNS) or any(Path(folder).glob(EPOCH_GLOB))


def _read_config(folder):
    path = folder / RUN_CONFIG
    if not path.is_file():
        raise BadRun(f"no {RUN_CONFIG}: not a run folder, or a run killed before it began")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise BadRun(f"{RUN_CONFIG} cannot be read ({type(err).__name__}): truncated or not JSON") from None
    if not isinstance(config, dict) or not isinstance(config.get("trainer", {}), dict):
        raise BadRun(f"{RUN_CONFIG} is not a run's config (no object with a trainer section)")
    return config


def _read_history(path):
    """metrics.csv as a list of {column: float}, one per epoch; [] before the first epoch ends."""
    try:
        return read_history(path)
    except DamagedHistory as err:
        raise BadRun(f"{HISTORY} {err}") from None


def _read_test(folder):
    """{'test_accuracy': ...} from the first test result file test.py wrote, or {}."""
    path = next((folder / name for name in TEST_RESULTS if (folder / name).is_file()), None)
    if path is None:
        return {}
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))["metrics"]
        return {f"test_{key}": float(value) for key, value in metrics.items()}
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise BadRun(f"{path.name} cannot be read ({type(err).__name__}): truncated or not test.py's") from None


def _monitor(config):
    spec = config.get("trainer", {}).get("monitor", "off")
    parts = spec.split() if isinstance(spec, str) else []
    return (parts[0], parts[1]) if len(parts) == 2 and parts[0] in ("min", "max") else ("off", None)


def _best(rows, mode, metric):
    """(best value, its epoch) as the trainer's Monitor picks them: a tie goes to the later epoch."""
    best, best_epoch = None, None
    for row in rows:
        value = row.get(metric, math.nan)
        if math.isnan(value):
            continue
        if best is None or (value <= best if mode == "min" else value >= best):
            best, best_epoch = value, int(row["epoch"])
    return best, best_epoch


def _state(folder, config, rows, mode, metric):
    holder = run_lock.holder_seen(folder)
    if holder is not None:
        return f"running ({holder})"
    epochs_done = int(rows[-1]["epoch"]) if rows else 0
    wanted = config.get("trainer", {}).get("epochs")
    if isinstance(wanted, int) and epochs_done >= wanted:
        return "finished"
    return "finished (early stop)" if _stopped_early(config, rows, mode, metric) else "interrupted"


def _stopped_early(config, rows, mode, metric):
    """Whether the trainer's early stop ended the run after its last epoch (trainer.early_stop epochs or more
    without improvement, counted as the Monitor counts them)."""
    patience = config.get("trainer", {}).get("early_stop") or 0
    if mode == "off" or not isinstance(patience, int) or patience <= 0 or not rows:
        return False
    best, not_improved = None, 0
    for row in rows:
        value = row.get(metric, math.nan)
        if best is None or (value <= best if mode == "min" else value >= best):
            best, not_improved = value, 0
        else:
            not_improved += 1
    return not_improved > patience
