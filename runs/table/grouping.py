"""From run records to table rows: keep the runs --where asks for, find the settings that differ, and fold
runs that differ only in seed into one row of mean ± std over n runs."""
import json
import math
import re
import statistics
from collections import Counter

from utils.errors import UserError
from utils.lookup import did_you_mean

# keys that say which run it is, or how it is logged or stored, not what it learns: never a column, never
# enough to tell two settings apart (the named-run check lets a requeue change them, docs/restarts.md)
NOT_SETTINGS = {"seed", "tune.trial", "trainer.verbosity", "trainer.save_period", "trainer.keep_last",
                "trainer.log_step", "trainer.tensorboard", "trainer.tensorboard_images",
                "trainer.tensorboard_histograms", "trainer.trackers", "trainer.checkpoint_interval",
                "trainer.save_dir", "data_loader.args.data_dir", "data_loader.args.num_workers"}
RUN_COLUMNS = ("run", "state")  # what --where may ask besides config keys


class Stat:
    """A measure over the runs of one row: mean, sample std (None for a single value) and count."""

    def __init__(self, values):
        self.count = len(values)
        self.mean = statistics.fmean(values) if values else None
        self.std = statistics.stdev(values) if len(values) > 1 else None


def select(runs, wheres):
    """The runs whose values match every 'key=value' of `wheres` (config keys, run or state)."""
    known = set(RUN_COLUMNS).union(*(run["settings"] for run in runs))
    for text in wheres:
        key, sep, wanted = text.partition("=")
        if not sep or not key:
            raise UserError(f"--where {text!r} is not key=value; write e.g. --where optimizer.args.lr=0.01")
        if key not in known:
            close = [k for k in sorted(known) if k.endswith("." + key)] or did_you_mean(key, known)
            hint = f"did you mean {close[0]}?" if close else "use a dotted config key such as optimizer.args.lr"
            raise UserError(f"--where {key}: no run shown has this key; {hint}")
        runs = [run for run in runs if _matches(_value(run, key), wanted, key)]
    return runs


def differing_keys(runs):
    """The config keys whose values are not the same in every run (a key some runs lack differs too)."""
    keys = [key for key in dict.fromkeys(k for run in runs for k in run["settings"]) if key not in NOT_SETTINGS]
    return [key for key in keys if len({_text(run["settings"].get(key, _MISSING)) for run in runs}) > 1]


def rows(runs, setting_keys):
    """One row per setting: runs that differ only in seed (or a NOT_SETTINGS key) share a row."""
    groups = {}
    for run in runs:
        groups.setdefault(tuple(_text(run["settings"].get(k, _MISSING)) for k in setting_keys), []).append(run)
    return [_row(members, setting_keys) for members in groups.values()]


def measure_columns(runs):
    """The measure columns in the order shown: the best monitored value, last validation values, test results."""
    last = dict.fromkeys(k for run in runs for k in run["last"])
    test = dict.fromkeys(k for run in runs for k in run["test"])
    return ["epochs", "best", "best_epoch", *last, *test]


def _row(members, setting_keys):
    members = sorted(members, key=lambda run: natural_key(run["run"]))
    row = {"run": _label([run["run"] for run in members]), "n": len(members), "state": _state(members)}
    measures = {"epochs": [r["epochs"] for r in members], "best": [r["best"] for r in members],
                "best_epoch": [r["best_epoch"] for r in members]}
    for run in members:
        for key, value in {**run["last"], **run["test"]}.items():
            measures.setdefault(key, []).append(value)
    row.update({key: Stat([v for v in values if v is not None and not math.isnan(v)])
                for key, values in measures.items()})
    row.update({key: members[0]["settings"].get(key) for key in setting_keys})
    row["monitor"] = members[0]["monitor"]
    return row


def _label(names):
    """'lr01-seed*' for runs that share a prefix, else the names joined."""
    if len(names) == 1:
        return names[0]
    prefix = names[0]
    for name in names[1:]:
        while not name.startswith(prefix):
            prefix = prefix[:-1]
    return f"{prefix}*" if prefix else ",".join(names)


def _state(members):
    states = Counter(run["state"].split(" (")[0] if run["state"].startswith("running") else run["state"]
                     for run in members)
    if len(members) == 1:
        return members[0]["state"]
    if len(states) == 1:
        return next(iter(states))
    return ", ".join(f"{count} {state}" for state, count in states.items())


def natural_key(text):
    """'trial2' before 'trial10'."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", str(text))]


def _value(run, key):
    return run[key] if key in RUN_COLUMNS else run["settings"].get(key, _MISSING)


def _matches(value, wanted, key):
    if value is _MISSING:
        return False
    if key == "state":
        return value == wanted or value.startswith(wanted + " ")  # 'running' matches 'running (host ...)'
    try:
        parsed = json.loads(wanted)
    except ValueError:
        parsed = wanted
    return value == parsed or _text(value) == wanted or str(value) == wanted


_MISSING = object()


def _text(value):
    return "<missing>" if value is _MISSING else json.dumps(value, sort_keys=True)


def sort_rows(table_rows, columns, key):
    """Rows ordered by `key` (a column; '-key' for descending), runs without a value last; default: by run."""
    descending, column = key.startswith("-"), key.removeprefix("-")
    if column not in columns:
        close = did_you_mean(column, columns)
        hint = f"did you mean {close[0]}?" if close else f"choose one of: {', '.join(columns)}"
        raise UserError(f"--sort {column}: no such column; {hint}")
    present = [row for row in table_rows if _sort_value(row.get(column)) is not None]
    missing = [row for row in table_rows if _sort_value(row.get(column)) is None]
    present.sort(key=lambda row: _sort_value(row[column]), reverse=descending)
    return present + missing


def _sort_value(cell):
    if isinstance(cell, Stat):
        return None if cell.mean is None else (0, cell.mean, [])
    if cell is None:
        return None
    if isinstance(cell, (int, float)) and not isinstance(cell, bool):
        return (0, cell, [])
    return (1, 0, natural_key(_text(cell) if not isinstance(cell, str) else cell))
