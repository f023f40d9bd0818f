"""Checks of the config sections an entry point builds, before anything is built or written.

ConfigParser checks only what it uses itself (name, seed, trainer); train.py
and test.py call `check_sections` for the parts they build. Sections a user
adds for their own code are not checked here: `init_obj` checks them when it
builds them.
"""
import difflib
import logging
from numbers import Real

from utils.errors import UserError

# the top-level names the template reads; a user's own section close to one of them is likely a typo
KNOWN_SECTIONS = ("name", "n_gpu", "seed", "arch", "data_loader", "optimizer", "loss", "metrics",
                  "lr_scheduler", "trainer")
SECTION_KEYS = {"lr_scheduler": ("type", "args", "step")}  # others: type and args


def is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value):
    return isinstance(value, Real) and not isinstance(value, bool)


# dotted key -> (test, what the value must be); absent keys are not checked here
VALUE_RULES = {
    "n_gpu": (lambda v: is_int(v) and v >= 0, "a non-negative integer"),
    "data_loader.args.batch_size": (lambda v: is_int(v) and v > 0, "a positive integer"),
    "data_loader.args.num_workers": (lambda v: v is None or (is_int(v) and v >= 0),
                                     "a non-negative integer, or null to pick from the cores"),
    "data_loader.args.validation_split": (
        lambda v: (is_int(v) and v >= 0) or (is_number(v) and 0.0 <= v < 1.0),
        "a fraction in [0, 1) or a sample count"),
    "optimizer.args.lr": (lambda v: is_number(v) and v >= 0, "a non-negative number"),
    "lr_scheduler.step": (lambda v: v in ("epoch", "batch"), "\"epoch\" or \"batch\""),
}


def lookup(config, dotted):
    """The value at a dotted key, or KeyError."""
    node = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(dotted)
        node = node[part]
    return node


def check_sections(config, required, source="config"):
    """Raise a UserError naming the first problem in the sections `required` (plus lr_scheduler)."""
    for section in required:
        if section not in config:
            raise UserError(f"{source} has no '{section}' section; add it (see config.json "
                            "and the README's config section)")
    for section in [s for s in ("arch", "data_loader", "optimizer") if s in required] + ["lr_scheduler"]:
        if config.get(section) is not None:
            check_typed_section(config, section, source)
    if "loss" in required and not isinstance(config["loss"], str):
        check_typed_section(config, "loss", source)
    metrics = config.get("metrics", [])
    if not isinstance(metrics, list) or not all(isinstance(m, str) for m in metrics):
        raise UserError(f"{source}: 'metrics' must be a list of function names from model/metric.py")
    for dotted, (test, expected) in VALUE_RULES.items():
        try:
            value = lookup(config, dotted)
        except KeyError:
            continue
        if not test(value):
            raise UserError(f"{source}: {dotted} must be {expected}, got {value!r}; "
                            f"fix it in the config file or with -o {dotted}=...")
    warn_near_miss_sections(config, source)


def check_typed_section(config, section, source="config"):
    """`section` must be {"type": name, "args": {...}}, without misspelt keys."""
    part = config[section]
    if not isinstance(part, dict) or not isinstance(part.get("type"), str):
        raise UserError(f"{source}: '{section}' must be an object with a 'type' name "
                        f"and optional 'args', e.g. {{\"type\": \"...\", \"args\": {{}}}}")
    refuse_near_misses(part, SECTION_KEYS.get(section, ("type", "args")), section, source, cutoff=0.6)
    if not isinstance(part.get("args", {}), dict):
        raise UserError(f"{source}: {section}.args must be an object of keyword arguments")


def refuse_near_misses(section, known, where, source="config", cutoff=0.75):
    """A key that is not known but close to one that is, is a typo: refuse it, naming the right one.

    Keys far from every known one pass: they belong to the user's own code.
    """
    for key in section:
        close = difflib.get_close_matches(key, list(known), n=1, cutoff=cutoff) if key not in known else None
        if close:
            raise UserError(f"{source}: unknown key {where}.{key}; did you mean {where}.{close[0]}? "
                            "Rename it where it is set (the config file, or -o)")


def warn_near_miss_sections(config, source="config"):
    """A top-level key that is not the template's but close to one is probably a typo: say so.

    Not an error: a project may add sections of its own for its own code.
    """
    for key in config:
        close = difflib.get_close_matches(key, KNOWN_SECTIONS, n=1, cutoff=0.75) \
            if key not in KNOWN_SECTIONS else None
        if close and close[0] not in config:
            logging.getLogger("config").warning(
                f"Warning: {source} has a section '{key}' that the template does not read; "
                f"did you mean '{close[0]}'?")
