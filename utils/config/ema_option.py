"""`trainer.ema`: the averaged model's settings, read and checked here (trainer/ema.py keeps the average).
null or absent: no average. An object: any of the keys below, the rest take their defaults."""
from numbers import Real

from utils.errors import UserError
from utils.lookup import did_you_mean

# decay: weight of the old average per update; every: optimizer steps between updates; start: optimizer steps
# before the first update; validate: validation (and so model_best.pth) uses the averaged weights
EMA_DEFAULTS = {"decay": 0.999, "every": 1, "start": 0, "validate": False}
EXAMPLE = '{"decay": 0.999, "every": 1, "start": 0, "validate": false}'
WHERE = "config: trainer.ema"


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


# key -> (its test, what it must be)
CHECKS = {
    "decay": (lambda v: isinstance(v, Real) and not isinstance(v, bool) and 0 < v < 1, "a number in (0, 1)"),
    "every": (lambda v: _is_int(v) and v > 0, "a positive integer (optimizer steps)"),
    "start": (lambda v: _is_int(v) and v >= 0, "a non-negative integer (optimizer steps)"),
    "validate": (lambda v: isinstance(v, bool), "true or false"),
}


def ema_settings(value):
    """The settings as a full dict (None: off); a one-line UserError for bad input."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise UserError(f"{WHERE} must be null or an object such as {EXAMPLE}, got {value!r}")
    for key in value:  # the section is the template's own: every unknown key is refused
        if key not in EMA_DEFAULTS:
            close = did_you_mean(key, EMA_DEFAULTS)
            hint = f"did you mean trainer.ema.{close[0]}? " if close else ""
            raise UserError(f"{WHERE}: unknown key trainer.ema.{key}; {hint}known keys: {', '.join(EMA_DEFAULTS)}")
    for key, (test, expected) in CHECKS.items():
        if key in value and not test(value[key]):
            raise UserError(f"{WHERE}.{key} must be {expected}, got {value[key]!r}; "
                            f"fix it in the config file or with -o trainer.ema.{key}=...")
    return {**EMA_DEFAULTS, **value}


def check_ema(value):
    """The trainer option table's test: raise the one-line error, or say yes."""
    ema_settings(value)
    return True
