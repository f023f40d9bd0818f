"""The one checker of config values (against utils/config/rules.py), run before anything is built or written;
sections a user adds for their own code are checked by `init_obj` when it builds them."""
import logging

from utils.config.dotted import get
from utils.config.rules import RULES, UNSET
from utils.errors import UserError
from utils.lookup import TYPO, did_you_mean

# the top-level names the template reads; a user's own section close to one of them is likely a typo
KNOWN_SECTIONS = ("name", "n_gpu", "seed", "arch", "data_loader", "optimizer", "loss", "metrics",
                  "lr_scheduler", "trainer")
SECTION_KEYS = {"lr_scheduler": ("type", "args", "step")}  # others: type and args


def check_value(dotted, value):
    """`value` for the config key `dotted`, or a one-line UserError saying what it must be."""
    rule = RULES.get(dotted)
    if rule is not None and not rule.test(value):
        raise UserError(f"config: {dotted} must be {rule.expected}, got {value!r}; "
                        f"fix it in the config file or with -o {dotted}=...")
    return value


def check_sections(config, required):
    """Raise a UserError naming the first problem in the sections `required` (plus lr_scheduler)."""
    for section in required:
        if section not in config:
            raise UserError(f"config has no '{section}' section; add it (see config.json "
                            "and the README's section Config file format)")
    for section in [s for s in ("arch", "data_loader", "optimizer") if s in required] + ["lr_scheduler"]:
        if config.get(section) is not None:
            check_typed_section(config, section)
    if "loss" in required and not isinstance(config["loss"], str):
        check_typed_section(config, "loss")
    metrics = config.get("metrics", [])
    if not isinstance(metrics, list) or not all(isinstance(m, str) for m in metrics):
        raise UserError("config: 'metrics' must be a list of function names from model/metric.py")
    for dotted in RULES:
        if not dotted.startswith("trainer."):  # read_trainer_options checks those
            value = get(config, dotted, UNSET)
            if value is not UNSET:
                check_value(dotted, value)
    warn_near_miss_sections(config)


def check_typed_section(config, section):
    """`section` must be {"type": name, "args": {...}}, without misspelt keys."""
    part = config[section]
    if not isinstance(part, dict) or not isinstance(part.get("type"), str):
        raise UserError(f"config: '{section}' must be an object with a 'type' name "
                        f"and optional 'args', e.g. {{\"type\": \"...\", \"args\": {{}}}}")
    refuse_near_misses(part, SECTION_KEYS.get(section, ("type", "args")), section, cutoff=0.6)
    if not isinstance(part.get("args", {}), dict):
        raise UserError(f"config: {section}.args must be an object of keyword arguments")


def refuse_near_misses(section, known, where, cutoff=TYPO):
    """A key close to a known one is a typo: refuse it, naming the right one (far ones are the user's own)."""
    for key in section:
        close = did_you_mean(key, known, cutoff) if key not in known else None
        if close:
            raise UserError(f"config: unknown key {where}.{key}; did you mean {where}.{close[0]}? "
                            "Rename it where it is set (the config file, or -o)")


def warn_near_miss_sections(config):
    """A top-level key close to one of the template's is probably a typo: warn (a project may add its own)."""
    for key in config:
        close = did_you_mean(key, KNOWN_SECTIONS) if key not in KNOWN_SECTIONS else None
        if close and close[0] not in config:
            logging.getLogger("config").warning(
                f"Warning: config has a section '{key}' that the template does not read; "
                f"did you mean '{close[0]}'?")
