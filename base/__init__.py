"""The contracts a user subclasses: BaseDataLoader, BaseModel, BaseTrainer.

Imported lazily, so that `from base import BaseModel` (in model/model.py) loads
the 16-line model base alone, not the trainer with its logger and checkpoints.
"""
import importlib

_HOMES = {"BaseDataLoader": "base.base_data_loader", "BaseModel": "base.base_model",
          "BaseTrainer": "base.base_trainer"}
__all__ = list(_HOMES)


def __getattr__(name):
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'base' has no attribute '{name}'")
