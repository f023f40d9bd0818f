"""The contracts a user subclasses, imported lazily: `from base import BaseModel` loads no trainer."""
import importlib

_HOMES = {"BaseDataLoader": "base.base_data_loader", "BaseModel": "base.base_model",
          "BaseTrainer": "base.base_trainer"}
__all__ = list(_HOMES)


def __getattr__(name):
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'base' has no attribute '{name}'")
