"""The `tune` section of a config (tune.py): which study, where it lives, how many trials, and
the search space of dotted config keys. Every mistake is one UserError, before any trial starts.
"""
import copy
from types import SimpleNamespace

from search.outage import STORAGE_WAIT
from utils.config.check import refuse_near_misses
from utils.config.dotted import deepest, dotted, key_path, put
from utils.config.rules import RULES, is_int, is_number
from utils.errors import UserError
from utils.lookup import did_you_mean
from utils.run_names import check_study_name

TUNE_KEYS = ("study", "storage", "trials", "sampler", "pruner", "space", "heartbeat_interval", "grace_period",
             "storage_wait")
DIMENSION_KEYS = {"float": ("type", "low", "high", "log", "step"), "int": ("type", "low", "high", "log", "step"),
                  "categorical": ("type", "choices")}
# a killed worker's trial is retried once its heartbeat is older than grace_period (seconds)
HEARTBEAT_INTERVAL, GRACE_PERIOD = 30, 120


def read_tune_section(config, study=None, storage=None, trials=None):
    """The `tune` section checked against `config`, with the CLI's --study/--storage/--trials applied."""
    section = config.get("tune")
    if not isinstance(section, dict) or "space" not in section:
        raise UserError("config has no 'tune' section with a 'space'; add one, e.g. \"tune\": {\"trials\": 20, "
                        "\"space\": {\"optimizer.args.lr\": {\"type\": \"float\", \"low\": 1e-4, \"high\": 0.1, "
                        "\"log\": true}}} (see docs/search.md; search.json is a complete example)")
    refuse_near_misses(section, TUNE_KEYS, "tune", cutoff=0.6)
    tune = SimpleNamespace(
        study=study or section.get("study") or config["name"],
        storage=storage or section.get("storage"),
        trials=trials or section.get("trials", 20),
        sampler=_typed(section.get("sampler"), "sampler"),
        pruner=_typed(section.get("pruner"), "pruner"),
        heartbeat_interval=_positive_int(section, "heartbeat_interval", HEARTBEAT_INTERVAL),
        grace_period=_positive_int(section, "grace_period", GRACE_PERIOD),
        storage_wait=_positive_int(section, "storage_wait", STORAGE_WAIT),  # a database outage waited out
        space=section["space"])
    check_study_name(tune.study, "--study" if study else "tune.study" if section.get("study") else "the config's name")
    if not is_int(tune.trials) or tune.trials <= 0:
        raise UserError(f"tune.trials must be a positive integer, got {tune.trials!r}")
    if tune.storage is not None and not isinstance(tune.storage, str):
        raise UserError("tune.storage must be null (a SQLite file under save_dir) or a URL such as postgresql://...")
    if not isinstance(tune.space, dict) or not tune.space:
        raise UserError("tune.space must map dotted config keys to dimensions, e.g. "
                        "{\"optimizer.args.lr\": {\"type\": \"float\", \"low\": 1e-4, \"high\": 0.1}}")
    for key, spec in tune.space.items():
        _check_dimension(key, spec, config)
    return tune


def suggest(trial, space):
    """The trial's value for each key of the space ({dotted key: value}), asked from Optuna."""
    values = {}
    for key, spec in space.items():
        if spec["type"] == "categorical":
            values[key] = trial.suggest_categorical(key, spec["choices"])
        elif spec["type"] == "int":
            values[key] = trial.suggest_int(key, spec["low"], spec["high"], step=spec.get("step", 1),
                                            log=spec.get("log", False))
        else:
            values[key] = trial.suggest_float(key, spec["low"], spec["high"], step=spec.get("step"),
                                              log=spec.get("log", False))
    return values


def with_values(config, values):
    """A copy of `config` with each dotted key set to its value (keys checked by read_tune_section)."""
    config = copy.deepcopy(config)
    for key, value in values.items():
        put(config, key_path(key), value)
    return config


def first_point(space):
    """One point of the space (low ends, first choices): what tune.py builds once before any trial."""
    return {key: spec["choices"][0] if spec["type"] == "categorical" else spec["low"] for key, spec in space.items()}


def _check_dimension(key, spec, config):
    where = f"tune.space.{key}"
    if not isinstance(spec, dict) or spec.get("type") not in DIMENSION_KEYS:
        raise UserError(f"{where} must be an object with \"type\": \"float\", \"int\" or \"categorical\"")
    unknown = sorted(set(spec) - set(DIMENSION_KEYS[spec["type"]]))
    if unknown:
        raise UserError(f"{where} has unknown key {unknown[0]}; a {spec['type']} dimension takes "
                        f"{', '.join(DIMENSION_KEYS[spec['type']][1:])}")
    current = _lookup(config, key)
    extremes = _check_choices(where, spec, current) if spec["type"] == "categorical" \
        else _check_range(where, spec, current)
    test, expected = RULES[key][1:] if key in RULES else (lambda v: True, "")
    for value in extremes:
        if not test(value):
            raise UserError(f"{where} reaches {value!r}, but {key} must be {expected}; change the space")


def _check_choices(where, spec, current):
    choices = spec.get("choices")
    if not isinstance(choices, list) or not choices:
        raise UserError(f"{where}.choices must be a non-empty list")
    for choice in choices:
        if not (choice is None or isinstance(choice, (bool, int, float, str))):
            raise UserError(f"{where}: choice {choice!r} is not a number, string, boolean or null")
        if current is not None and choice is not None and _kind(choice) != _kind(current):
            raise UserError(f"{where}: choice {choice!r} is a {_kind(choice)}, but the config holds a "
                            f"{_kind(current)} ({current!r}); give choices of that type")
    return choices


def _check_range(where, spec, current):
    kind = spec["type"]
    number = is_int if kind == "int" else is_number
    low, high = spec.get("low"), spec.get("high")
    if not number(low) or not number(high):
        raise UserError(f"{where} needs numbers 'low' and 'high'{' (integers)' if kind == 'int' else ''}, "
                        f"got low={low!r}, high={high!r}")
    if low > high:
        raise UserError(f"{where} has low {low} > high {high}; swap them")
    if spec.get("log") and low <= 0:
        raise UserError(f"{where} is log-scaled, so low must be > 0, got {low}")
    if spec.get("log") and spec.get("step") is not None:
        raise UserError(f"{where}: give either log or step, not both")
    if spec.get("step") is not None and not (number(spec["step"]) and spec["step"] > 0):
        raise UserError(f"{where}.step must be a positive {'integer' if kind == 'int' else 'number'}")
    if current is not None and not is_number(current):
        raise UserError(f"{where} is a {kind} dimension, but the config holds a {_kind(current)} ({current!r}); "
                        "use a categorical dimension for it")
    return low, high


def _lookup(config, key):
    """The config's current value at the dotted `key`; a UserError naming near misses when it has none."""
    parts = key_path(key)
    node, depth = deepest(config, parts)
    if depth == len(parts):
        return node
    if not isinstance(node, dict):
        raise UserError(f"tune.space: {dotted(parts[:depth])} is not an object, so {key} cannot be set")
    near = did_you_mean(parts[depth], node)
    hint = f"did you mean {dotted(parts[:depth] + near)}? " if near else ""
    raise UserError(f"tune.space: unknown config key {key}; {hint}a space key names a value that the "
                    "config already sets")


def _kind(value):
    if isinstance(value, bool):
        return "boolean"
    return "number" if is_number(value) else type(value).__name__


def _typed(part, name):
    if part is None:
        return None
    if not isinstance(part, dict) or not isinstance(part.get("type"), str) or \
            not isinstance(part.get("args", {}), dict):
        raise UserError(f"tune.{name} must be {{\"type\": name, \"args\": {{...}}}} or null")
    refuse_near_misses(part, ("type", "args"), f"tune.{name}", cutoff=0.6)
    return part


def _positive_int(section, key, default):
    value = section.get(key, default)
    if not is_int(value) or value <= 0:
        raise UserError(f"tune.{key} must be a positive number of seconds, got {value!r}")
    return value
