"""Classic helpers, imported on first use: `import utils.before_torch` must not load torch (utils.util does)."""
import importlib

__all__ = ["MetricTracker", "inf_loop", "prepare_device", "read_json", "write_json"]


def __getattr__(name):
    if name in __all__:
        return getattr(importlib.import_module("utils.util"), name)
    raise AttributeError(f"module 'utils' has no attribute {name!r}")
