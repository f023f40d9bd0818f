"""MNIST from torchvision's files: a clear error when they are missing, and an
in-memory dataset that serves whole normalised batches by index."""
from pathlib import Path

import torch
from torchvision import datasets, transforms

from utils.errors import UserError

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
               "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def mnist_transform():
    return transforms.Compose([transforms.ToTensor(), transforms.Normalize((MNIST_MEAN,), (MNIST_STD,))])


def load_mnist(data_dir, train, download, transform=None):
    """torchvision's MNIST at `data_dir`; downloads only when files are missing."""
    raw = Path(data_dir) / "MNIST" / "raw"
    missing = [name for name in MNIST_FILES if not (raw / name).is_file()]
    if missing and download:
        try:
            datasets.MNIST(data_dir, train=train, download=True)
            missing = []
        except Exception:  # no network, a proxy, a mirror down: all end the same way
            pass
    if missing:
        raise UserError(f"MNIST files missing in {raw}: {', '.join(missing)}; place the four files "
                        f"({', '.join(MNIST_FILES)}) there, or set data_loader.args.data_dir")
    try:
        return datasets.MNIST(data_dir, train=train, download=False, transform=transform)
    except (RuntimeError, ValueError, OSError) as err:
        raise UserError(f"MNIST files in {raw} are unreadable or corrupt ({err}); "
                        "replace them with intact copies") from None


class InMemoryMNIST(torch.utils.data.Dataset):
    """MNIST decoded once into uint8 tensors; batches are normalised when served.

    Images stay uint8 (a quarter of float32's memory); `__getitems__` takes a
    whole batch of indices, so the DataLoader fetches a batch with one tensor
    index instead of collating samples one by one. The arithmetic is that of
    ToTensor + Normalize, so values match the per-sample path bit for bit.
    """

    def __init__(self, data_dir, train=True, download=True):
        mnist = load_mnist(data_dir, train, download)
        self.images = mnist.data  # (N, 28, 28) uint8
        self.targets = mnist.targets

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, index):
        images, targets = self.__getitems__([index])
        return images[0], int(targets[0])

    def __getitems__(self, indices):
        index = torch.as_tensor(indices, dtype=torch.long)
        images = self.images[index].unsqueeze(1).float().div_(255)
        return images.sub_(MNIST_MEAN).div_(MNIST_STD), self.targets[index]


def keep_batch(batch):
    """collate_fn for datasets that already return whole batches."""
    return batch
