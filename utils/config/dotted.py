"""Config values by key path: the one walker behind -o, the CLI flags' targets, tune.space, the changed-keys
line and the trackers' flattened parameters.

A key path is written 'optimizer.args.lr', or 'optimizer;args;lr' as the classic template's CustomArgs
targets are (a target with ';' is split on ';' only).
"""


def key_path(key):
    """'a.b.c' or the classic 'a;b;c' -> ['a', 'b', 'c']."""
    return key.split(";" if ";" in key else ".")


def dotted(path):
    """['a', 'b', 'c'] -> 'a.b.c', as messages and flattened configs spell a key."""
    return ".".join(path)


def deepest(config, path):
    """(node, depth): how far `path` leads into `config`, and the value at path[:depth]. depth == len(path):
    the whole path is there; else path[depth] is missing from node, or node is not an object."""
    node = config
    for depth, part in enumerate(path):
        if not isinstance(node, dict) or part not in node:
            return node, depth
        node = node[part]
    return node, len(path)


def get(config, path, default=None):
    """The value at `path` (a list, or a dotted key), or `default` where the config has none."""
    path = key_path(path) if isinstance(path, str) else path
    node, depth = deepest(config, path)
    return node if depth == len(path) else default


def put(config, path, value):
    """Set the value at `path`, making the objects on the way that are missing (callers check the keys)."""
    path = key_path(path) if isinstance(path, str) else path
    node = config
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = value


def flatten(config, prefix=""):
    """{'optimizer.args.lr': 0.001, ...}: every leaf of a nested config under its dotted key (lists stay whole;
    an empty object is a leaf)."""
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def differences(old, new, path=()):
    """(key path, old value, new value) of every value that differs between two configs."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in list(old) + [k for k in new if k not in old]:
            yield from differences(old.get(key), new.get(key), (*path, key))
    elif old != new:
        yield path, old, new
