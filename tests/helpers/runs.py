"""Run folders a test made, and the weights in their checkpoints."""
from pathlib import Path

import torch

from tests.helpers.configs import shrink_config, write_config


def run_dirs(save_dir):
    """The run folders under <save_dir>/models/<name>/."""
    return sorted(p for p in Path(save_dir, "models").glob("*/*") if p.is_dir())


def named(tmp_path, data, run_id, *extra, epochs=2, **trainer):
    """A shrunk config for `train.py -c <it> --run_id NAME`: returns (its path, the run folder it will train)."""
    cfg = shrink_config(tmp_path, data, epochs=epochs, **trainer)
    path = write_config(tmp_path, cfg, f"{run_id}.json")
    return path, tmp_path / "saved" / "models" / cfg["name"] / run_id


def weights(path):
    return torch.load(path, weights_only=True)["state_dict"]


def same_weights(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
