"""`trainer.trackers`: which experiment trackers a run writes to, read without importing any of them.
It is config reading (utils/config/rules.py checks the option with it); logger/trackers/ builds the trackers.

Each entry is a name ("mlflow") or a section {"type": "mlflow", "args": {...}}. The
module of a tracker is named here as a string and imported only when the tracker is
listed, so a user without MLflow or W&B installed never pays for them.
"""
from types import SimpleNamespace

from utils.errors import UserError
from utils.lookup import HINT, TYPO, did_you_mean

# name -> "module:class"; "tensorboard" is the writer's own SummaryWriter (trainer.tensorboard)
KNOWN = {
    "mlflow": "logger.trackers.mlflow_tracker:MlflowTracker",
    "wandb": "logger.trackers.wandb_tracker:WandbTracker",
    "tensorboard": None,
}
# each tracker's args, besides "required": MLflow's are all ours, so any other is refused; W&B passes any other
# to wandb.init, so only one close to a keyword wandb.init takes (wandb 0.31.0) is refused as a misspelling
ARGS = {
    "mlflow": ({"tracking_uri", "experiment", "tags"}, True),
    "wandb": ({"mode", "entity", "project", "dir", "id", "name", "notes", "tags", "config", "config_exclude_keys",
               "config_include_keys", "allow_val_change", "group", "job_type", "force", "reinit", "resume",
               "resume_from", "fork_from", "save_code", "tensorboard", "sync_tensorboard", "monitor_gym",
               "settings", "anonymous"}, False),
    "tensorboard": (set(), True),
}
EXAMPLE = '["mlflow"] or [{"type": "mlflow", "args": {"tracking_uri": "http://host:5000"}}]'


def parse_trackers(value, where="config: trainer.trackers"):
    """[SimpleNamespace(name, args, required)] for a valid list; a one-line UserError otherwise."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise UserError(f"{where} must be a list such as {EXAMPLE}, got {value!r}")
    specs = [_parse_entry(entry, where) for entry in value]
    names = [s.name for s in specs]
    doubled = sorted({n for n in names if names.count(n) > 1})
    if doubled:
        raise UserError(f"{where} lists {', '.join(doubled)} more than once; keep one entry per tracker")
    return specs


def check_trackers(value):
    """The trainer option table's test: parse (raising the did-you-mean line) and say yes."""
    parse_trackers(value)
    return True


def _parse_entry(entry, where):
    if isinstance(entry, str):
        name, args = entry, {}
    elif isinstance(entry, dict) and isinstance(entry.get("type"), str) and isinstance(entry.get("args", {}), dict) \
            and set(entry) <= {"type", "args"}:
        name, args = entry["type"], dict(entry.get("args", {}))
    else:
        raise UserError(f"{where}: each entry is a tracker name or {{\"type\": name, \"args\": {{...}}}}, "
                        f"got {entry!r}")
    if name not in KNOWN:
        close = did_you_mean(name, KNOWN)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise UserError(f"{where}: unknown tracker '{name}'; {hint}known trackers: {', '.join(KNOWN)}")
    required = args.pop("required", False)
    if not isinstance(required, bool):
        raise UserError(f"{where}: {name}.args.required must be true or false, got {required!r}")
    _check_args(name, args, where)
    return SimpleNamespace(name=name, args=args, required=required)


def _check_args(name, args, where):
    """A misspelt arg (trackinguri, projct) would leave the run untracked: refused, naming the right one."""
    known, closed = ARGS.get(name, (set(), False))  # a tracker added to KNOWN alone: its args pass as given
    for key in sorted(set(args) - known):
        close = did_you_mean(key, [*known, "required"], cutoff=HINT if closed else TYPO)
        if not (close or closed):
            continue  # another wandb.init keyword: wandb itself says whether it takes it
        hint = f"did you mean '{close[0]}'? " if close else ""
        takes = f"{name} takes {', '.join(sorted(known | {'required'}))}" if closed else \
            f"{name}'s args are required and {name}.init's keywords"
        raise UserError(f"{where}: unknown {name} arg '{key}'; {hint}{takes}")
