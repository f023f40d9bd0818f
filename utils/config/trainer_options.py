"""`read_trainer_options`: the one reader of the trainer section; unknown keys that are no near miss are the user's."""
from types import SimpleNamespace

from utils.config.check import check_value, refuse_near_misses
from utils.config.rules import REQUIRED, RULES, TRAINER_OPTIONS
from utils.errors import UserError


def read_trainer_options(section):
    """The trainer section as a namespace with every option set; a UserError for bad input."""
    if not isinstance(section, dict):
        raise UserError("config: 'trainer' must be an object, e.g. {\"epochs\": 10, \"save_dir\": \"saved/\"}")
    refuse_near_misses(section, TRAINER_OPTIONS, "trainer")
    values = {name: RULES[f"trainer.{name}"].default for name in TRAINER_OPTIONS}
    for name, default in values.items():
        if name in section:
            values[name] = check_value(f"trainer.{name}", section[name])
        elif default is REQUIRED:
            raise UserError(f"config has no 'trainer.{name}'; add it to the trainer section")
    return SimpleNamespace(**values)
