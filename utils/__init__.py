"""The classic `from utils import read_json, ...` names, imported on first use (PEP 562): a tool that needs
only the small helpers (compare.py reads run folders; utils.before_torch runs before torch loads OpenMP)
starts without importing torch."""
__all__ = ["MetricTracker", "inf_loop", "prepare_device", "read_json", "write_json"]


def __getattr__(name):
    if name in __all__:
        from utils import util

        return getattr(util, name)
    raise AttributeError(f"module 'utils' has no attribute {name!r}")
