"""Command-line overrides of config values: `-o key.path=value` and `+key.path=value`."""
import json

from utils.config.dotted import deepest, differences, dotted, key_path, put
from utils.config.rules import TRAINER_OPTIONS
from utils.errors import UserError
from utils.lookup import TYPO, did_you_mean


def parse_override(text):
    """'a.b=3' -> (['a', 'b'], 3, allow_new=False); '+a.b=x' adds a new key."""
    allow_new = text.startswith("+")
    key, sep, raw = text.removeprefix("+").partition("=")
    path = key.split(".")
    if not sep or not key or any(part == "" for part in path):
        raise UserError(f"override '{text}' is not key.path=value; write e.g. -o trainer.epochs=3")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw  # not a JSON literal: take it as a string
    return path, value, allow_new


# the keys the code reads with a default: -o sets them without + where the config leaves them out
KNOWN_KEYS = {"trainer": TRAINER_OPTIONS}


def with_known_keys(overrides, known=KNOWN_KEYS):
    """-o texts with keys the code reads with a default (known: {'trainer': names}) marked as addable, so
    `-o trainer.len_epoch=100` works when the config leaves it out (train.py and tune.py alike); a near miss
    (+trainer.epoch=3) is an error."""
    marked = []
    for text in overrides:
        path, value, allow_new = parse_override(text)
        section, last = dotted(path[:-1]), path[-1]
        names = list(known.get(section, ()))
        close = did_you_mean(last, names, TYPO) if last not in names else []
        if close:
            right = f"{section}.{close[0]}"
            raise UserError(f"unknown config key {dotted(path)}; did you mean {right}? "
                            f"write -o {right}={value if isinstance(value, str) else json.dumps(value)}")
        marked.append(text if allow_new or last not in names else "+" + text)
    return marked


def apply_override(config, path, value, allow_new=False):
    """Set config[path] = value, refusing unknown keys and changes of type."""
    full = dotted(path)
    node, depth = deepest(config, path[:-1])
    if not isinstance(node, dict):
        raise UserError(f"cannot set {full}: {dotted(path[:depth])} is not an object")
    last = path[-1]
    if depth < len(path) - 1 or last not in node:
        if not allow_new:
            raise UserError(_unknown_key(node, path[:depth + 1], full))
    else:
        old_kind, new_kind = _kind(node[last]), _kind(value)
        if "null" not in (old_kind, new_kind) and old_kind != new_kind:  # null goes with every type
            # a number where the file has a string is the one case quoting fixes: name='"123"'
            quote = ", or quote it as a JSON string" if old_kind == "string" else ""
            raise UserError(f"override {full}={json.dumps(value)} has type {new_kind}, but the "
                            f"config holds {old_kind} ({json.dumps(node[last])}); give a value "
                            f"of that type{quote}")
    put(config, path, value)


def _unknown_key(node, path, full_dotted):
    """`path` ends at the first key missing from `node`; `full_dotted` is what the user wrote."""
    hint = did_you_mean(path[-1], node, n=3)
    near = f"did you mean {', '.join(dotted([*path[:-1], h]) for h in hint)}? " if hint else ""
    return f"unknown config key {dotted(path)}; {near}to add a new key write -o +{full_dotted}=VALUE"


def _kind(value):
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return {str: "string", list: "list", dict: "object"}.get(type(value), type(value).__name__)


def updated_config(config, modification, overrides):
    """A copy of `config` with the CLI flags' values ('a;b;c' or 'a.b.c' targets) and the -o overrides applied."""
    config = _plain(config)
    for target, value in (modification or {}).items():
        if value is not None:  # a registered flag names its own target: it may add the key
            apply_override(config, key_path(target), value, allow_new=True)
    for text in overrides:
        path, value, allow_new = parse_override(text)
        apply_override(config, path, value, allow_new)
    return config


def merged_config(base, patch):
    """`patch` over `base` key by key: {"trainer": {"epochs": 5}} changes trainer.epochs alone. A section that
    names another `type` replaces the old one whole (its args belong to the new type); lists and values replace."""
    if not (isinstance(base, dict) and isinstance(patch, dict)):
        return _plain(patch)
    if patch.get("type", base.get("type")) != base.get("type"):
        return _plain(patch)
    merged = _plain(base)
    for key, value in patch.items():
        merged[key] = merged_config(base[key], value) if key in base else _plain(value)
    return merged


def changed_keys(old, new):
    """'key.path: old -> new' for every value that differs between two configs."""
    return [f"{dotted(path)}: {json.dumps(a)} -> {json.dumps(b)}" for path, a, b in differences(old, new)]


def _plain(value):
    """A deep copy made of dicts and lists only."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
