"""Small helpers shared by the entry points, the trainer and the tests."""
import json
import logging
import os
from collections import OrderedDict
from itertools import repeat
from pathlib import Path

import torch

from utils.errors import UserError


def read_json(fname):
    """Read a JSON object, keeping key order; a bad file is a UserError."""
    fname = Path(fname)
    try:
        text = fname.read_text()
    except FileNotFoundError:
        raise UserError(f"config file {fname} does not exist; pass an existing file with -c") from None
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"cannot read config file {fname}: {err}; check the path and its permissions") from None
    try:
        content = json.loads(text, object_hook=OrderedDict)
    except json.JSONDecodeError as err:
        raise UserError(
            f"config file {fname} is not valid JSON: {err.msg} at line {err.lineno}, "
            f"column {err.colno}; fix the file there") from None
    if not isinstance(content, dict):
        raise UserError(f"config file {fname} must hold a JSON object {{...}}, "
                        f"not a {type(content).__name__}")
    return content


def write_json(content, fname):
    """Write `content` as indented JSON, atomically (temp file, then rename)."""
    fname = Path(fname)
    tmp = fname.with_name(f".{fname.name}.tmp")
    with tmp.open("wt") as handle:
        json.dump(content, handle, indent=4, sort_keys=False)
        handle.write("\n")
    os.replace(tmp, fname)


def inf_loop(data_loader):
    """Endless iterator over a data loader (for iteration-based training)."""
    for loader in repeat(data_loader):
        yield from loader


def prepare_device(n_gpu_use):
    """Pick the device and the GPU ids for DataParallel; warn when fewer GPUs exist."""
    logger = logging.getLogger("prepare_device")
    n_gpu = torch.cuda.device_count()
    if n_gpu_use > 0 and n_gpu == 0:
        logger.warning("Warning: there's no GPU available on this machine, training will be performed on CPU.")
        n_gpu_use = 0
    if n_gpu_use > n_gpu:
        logger.warning(f"Warning: the number of GPUs configured to use is {n_gpu_use}, "
                       f"but only {n_gpu} are available on this machine.")
        n_gpu_use = n_gpu
    device = torch.device("cuda:0" if n_gpu_use > 0 else "cpu")
    return device, list(range(n_gpu_use))


class MetricTracker:
    """Running, batch-size-weighted averages of named values.

    Values may be tensors on any device: they are summed where they live, so
    updating costs no host-device synchronisation; numbers are read only by
    `avg`, `result` and `state_dict`. `_data` gives the classic pandas table.
    """

    def __init__(self, *keys, writer=None):
        self.writer = writer  # kept for the classic signature; the trainer writes scalars
        self.keys = list(keys)
        self.reset()

    def reset(self):
        self._totals = dict.fromkeys(self.keys, 0.0)
        self._counts = dict.fromkeys(self.keys, 0)

    def update(self, key, value, n=1):
        if isinstance(value, torch.Tensor):
            value = value.detach()
        self._totals[key] = self._totals[key] + value * n
        self._counts[key] += n

    def avg(self, key):
        count = self._counts[key]
        return float(self._totals[key]) / count if count else float("nan")

    def result(self):
        return {key: self.avg(key) for key in self.keys}

    def all_reduce(self, reduce_sum):
        """Sum totals and counts over processes with `reduce_sum(tensor) -> tensor`."""
        packed = torch.tensor([[float(self._totals[k]), self._counts[k]] for k in self.keys],
                              dtype=torch.float64)
        packed = reduce_sum(packed)
        self._totals = {k: packed[i, 0].item() for i, k in enumerate(self.keys)}
        self._counts = {k: int(packed[i, 1].item()) for i, k in enumerate(self.keys)}

    def state_dict(self):
        return {"totals": {k: float(v) for k, v in self._totals.items()}, "counts": dict(self._counts)}

    def load_state_dict(self, state):
        self._totals = dict(state["totals"])
        self._counts = dict(state["counts"])

    @property
    def _data(self):
        import pandas as pd  # only when the table is asked for: pandas is slow to import

        counts = [self._counts[k] for k in self.keys]
        totals = [float(self._totals[k]) for k in self.keys]
        return pd.DataFrame({"total": totals, "counts": counts,
                             "average": [self.avg(k) for k in self.keys]}, index=self.keys)
