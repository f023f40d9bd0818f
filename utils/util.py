"""Small helpers shared by the entry points, the trainer and the tests."""
import json
import logging
from collections import OrderedDict
from itertools import repeat
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel

from utils import distributed as dist
from utils.atomic import atomic_write
from utils.errors import UserError
from utils.metric_tracker import MetricTracker  # noqa: F401  (its classic home)
from utils.sharding import shard_model


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
        raise UserError(f"config file {fname} is not valid JSON: {err.msg} at line {err.lineno}, "
                        f"column {err.colno}; fix the file there") from None
    if not isinstance(content, dict):
        raise UserError(f"config file {fname} must hold a JSON object {{...}}, not a {type(content).__name__}")
    return content


def write_json(content, fname):
    """Write `content` as indented JSON, atomically (see utils.atomic)."""
    def dump(handle):
        json.dump(content, handle, indent=4, sort_keys=False)
        handle.write("\n")
    atomic_write(fname, dump, binary=False)


def inf_loop(data_loader):
    """Endless iterator over a data loader (for iteration-based training)."""
    for loader in repeat(data_loader):
        yield from loader


def prepare_device(n_gpu_use):
    """Pick the device and the GPU ids for DataParallel; warn when fewer GPUs exist."""
    logger = logging.getLogger("prepare_device")
    n_gpu = torch.cuda.device_count()
    if n_gpu_use > 0 and n_gpu == 0:
        # the expected fallback, not a fault: info, so that verbosity 0 keeps it quiet
        logger.info("There's no GPU available on this machine; running on CPU.", extra={"once": "no GPU"})
        n_gpu_use = 0
    if n_gpu_use > n_gpu:
        logger.warning(f"Warning: the number of GPUs configured to use is {n_gpu_use}, "
                       f"but only {n_gpu} are available on this machine.")
        n_gpu_use = n_gpu
    device = torch.device("cuda:0" if n_gpu_use > 0 else "cpu")
    return device, list(range(n_gpu_use))


def place_model(model, n_gpu, device=None, compile=False, ddp=False, strategy="ddp", amp=False):
    """(the model on its device, compiled and wrapped for several devices; the device). `device`: torchrun's,
    else `n_gpu` GPUs from prepare_device; under torchrun `ddp` wraps it in DDP (or shards it with FSDP2 when
    `strategy` is "fsdp", computing in bf16 when `amp` is), else several GPUs in DataParallel."""
    device_ids = []
    if device is None:
        device, device_ids = prepare_device(n_gpu)
    model = model.to(device)
    if ddp and strategy == "fsdp" and dist.is_distributed():
        model = shard_model(model, device, amp)  # before compile: the units are the model's own submodules
        return (torch.compile(model) if compile else model), device
    if compile:
        model = torch.compile(model)
    if ddp and dist.is_distributed():
        model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    elif len(device_ids) > 1:
        model = torch.nn.DataParallel(model, device_ids=device_ids)
    return model, device
