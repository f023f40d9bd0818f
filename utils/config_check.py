"""Check a config's shape and values before anything is built or written."""
from numbers import Real

from utils.errors import UserError

REQUIRED_SECTIONS = ("name", "arch", "data_loader", "optimizer", "loss", "metrics", "trainer")


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, Real) and not isinstance(value, bool)


def _positive_int(value):
    return _is_int(value) and value > 0


def _non_negative_int(value):
    return _is_int(value) and value >= 0


def _monitor(value):
    if value == "off":
        return True
    parts = value.split() if isinstance(value, str) else []
    return len(parts) == 2 and parts[0] in ("min", "max")


# dotted key -> (test, what the value must be); absent keys are not checked here
VALUE_RULES = {
    "n_gpu": (_non_negative_int, "a non-negative integer"),
    "seed": (lambda v: v is None or _is_int(v), "an integer or null"),
    "data_loader.args.batch_size": (_positive_int, "a positive integer"),
    "data_loader.args.num_workers": (_non_negative_int, "a non-negative integer"),
    "data_loader.args.validation_split": (
        lambda v: (_is_int(v) and v >= 0) or (_is_number(v) and 0.0 <= v < 1.0),
        "a fraction in [0, 1) or a sample count"),
    "optimizer.args.lr": (lambda v: _is_number(v) and v >= 0, "a non-negative number"),
    "trainer.epochs": (_positive_int, "a positive integer"),
    "trainer.save_dir": (lambda v: isinstance(v, str) and v != "", "a folder path"),
    "trainer.save_period": (_positive_int, "a positive integer"),
    "trainer.verbosity": (lambda v: v in (0, 1, 2) and not isinstance(v, bool), "0, 1 or 2"),
    "trainer.monitor": (_monitor, "'off' or 'min <metric>' / 'max <metric>', e.g. 'min val_loss'"),
    "trainer.early_stop": (_non_negative_int, "a non-negative integer (0 turns it off)"),
    "trainer.tensorboard": (lambda v: isinstance(v, bool), "true or false"),
    "trainer.len_epoch": (lambda v: v is None or _positive_int(v), "a positive integer or null"),
    "trainer.log_step": (_positive_int, "a positive integer"),
    "trainer.keep_last": (lambda v: v is None or _positive_int(v), "a positive integer or null"),
    "trainer.amp": (lambda v: v in ("bf16", "fp16", False, None), "\"bf16\", \"fp16\" or false"),
    "trainer.accumulate_steps": (_positive_int, "a positive integer"),
    "trainer.clip_grad_norm": (lambda v: v is None or (_is_number(v) and v > 0),
                               "a positive number or null"),
    "trainer.compile": (lambda v: isinstance(v, bool), "true or false"),
    "trainer.deterministic": (lambda v: isinstance(v, bool), "true or false"),
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


def check_config(config, source="config"):
    """Raise a UserError naming the first problem found in `config`."""
    for section in REQUIRED_SECTIONS:
        if section not in config:
            raise UserError(f"{source} has no '{section}' section; add it (see config.json "
                            "and the README's config section)")
    for section in ("arch", "data_loader", "optimizer"):
        _check_typed_section(config, section, source)
    if "lr_scheduler" in config and config["lr_scheduler"] is not None:
        _check_typed_section(config, "lr_scheduler", source)
    if not isinstance(config["name"], str) or not config["name"]:
        raise UserError(f"{source}: 'name' must be a non-empty string")
    if not isinstance(config["loss"], str):
        raise UserError(f"{source}: 'loss' must be the name of a function in model/loss.py")
    metrics = config["metrics"]
    if not isinstance(metrics, list) or not all(isinstance(m, str) for m in metrics):
        raise UserError(f"{source}: 'metrics' must be a list of function names from model/metric.py")
    if not isinstance(config["trainer"], dict):
        raise UserError(f"{source}: 'trainer' must be an object")
    for key in ("epochs", "save_dir"):
        if key not in config["trainer"]:
            raise UserError(f"{source} has no 'trainer.{key}'; add it to the trainer section")
    for dotted, (test, expected) in VALUE_RULES.items():
        try:
            value = lookup(config, dotted)
        except KeyError:
            continue
        if not test(value):
            raise UserError(f"{source}: {dotted} must be {expected}, got {value!r}; "
                            f"fix it in the config file or with -o {dotted}=...")


def _check_typed_section(config, section, source):
    part = config[section]
    if not isinstance(part, dict) or not isinstance(part.get("type"), str):
        raise UserError(f"{source}: '{section}' must be an object with a 'type' name "
                        f"and optional 'args', e.g. {{\"type\": \"...\", \"args\": {{}}}}")
    if not isinstance(part.get("args", {}), dict):
        raise UserError(f"{source}: {section}.args must be an object of keyword arguments")
