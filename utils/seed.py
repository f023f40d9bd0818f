"""Seeding, and the random-number-generator state that a checkpoint carries."""
import random

import numpy as np
import torch


def seed_everything(seed, rank=0, deterministic=False):
    """Seed Python, NumPy and torch; ranks get different streams (seed + rank)."""
    seed = int(seed) + rank
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        # cuBLAS needs this set before its first use to be deterministic
        import os
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False


def seed_worker(worker_id):
    """DataLoader worker_init_fn: derive Python and NumPy seeds from torch's."""
    worker_seed = torch.initial_seed() % 2**32
    np.random.seed(worker_seed)
    random.seed(worker_seed)


def get_rng_state():
    """Every global RNG's state as plain data (loads with weights_only=True)."""
    np_state = np.random.get_state(legacy=False)
    state = {
        "python": random.getstate(),
        "numpy": {"key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
                  "pos": int(np_state["state"]["pos"]),
                  "has_gauss": int(np_state["has_gauss"]),
                  "gauss": float(np_state["gauss"])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            # one GPU per rank: asking every device would open a CUDA context on each, from each rank
            state["cuda_current"] = torch.cuda.get_rng_state()
        else:
            state["cuda"] = torch.cuda.get_rng_state_all()  # DataParallel uses them all
    return state


def set_rng_state(state):
    """Restore what get_rng_state returned."""
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    np_state = state["numpy"]
    np.random.set_state({"bit_generator": "MT19937",
                         "state": {"key": np_state["key"].numpy().astype(np.uint32), "pos": np_state["pos"]},
                         "has_gauss": np_state["has_gauss"], "gauss": np_state["gauss"]})
    torch.set_rng_state(state["torch"])
    if torch.cuda.is_available():
        if "cuda_current" in state:
            torch.cuda.set_rng_state(state["cuda_current"])
        elif "cuda" in state:
            torch.cuda.set_rng_state_all(state["cuda"][:torch.cuda.device_count()])
