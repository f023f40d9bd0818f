"""Small synthetic MNIST files in the real IDX format, so tests never download.

Each class draws a bright square at its own place on a noisy background, so
a model can learn the labels in a few steps.
"""
import struct
from pathlib import Path

import numpy as np

FILES = {True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def synthetic_digits(count, seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, size=count, dtype=np.uint8)
    images = rng.integers(0, 60, size=(count, 28, 28), dtype=np.uint8)
    for i, label in enumerate(labels):
        row, col = 2 + 8 * (label // 4), 2 + 8 * (label % 4)
        images[i, row:row + 7, col:col + 7] = 255
    return images, labels


def write_idx(path, array):
    """IDX: magic (0, 0, dtype 0x08 = ubyte, ndim), big-endian sizes, then the bytes."""
    with open(path, "wb") as handle:
        handle.write(struct.pack(">BBBB", 0, 0, 0x08, array.ndim))
        handle.write(struct.pack(f">{array.ndim}I", *array.shape))
        handle.write(array.astype(np.uint8).tobytes())


def write_synthetic_mnist(data_dir, n_train=600, n_test=200, seed=0):
    """Write the four MNIST files under `<data_dir>/MNIST/raw`; return data_dir."""
    raw = Path(data_dir) / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for train, count in ((True, n_train), (False, n_test)):
        images, labels = synthetic_digits(count, seed + (0 if train else 1))
        write_idx(raw / FILES[train][0], images)
        write_idx(raw / FILES[train][1], labels)
    return Path(data_dir)
