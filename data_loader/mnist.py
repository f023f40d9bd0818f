"""MNIST from torchvision's files, in <data>/MNIST/raw or a folder linked to <data>/MNIST: a clear error when
they are missing, a download that never writes into a linked folder, and an in-memory dataset of them."""
import logging
import math
import os
import re
import struct
from pathlib import Path

import torch

from base.batch_transform import ScaleNormalize
from utils.errors import UserError

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
               "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def load_mnist(data_dir, train, download):
    """torchvision's MNIST at `data_dir`, samples as uint8 (C, H, W): the float arithmetic waits for the batch."""
    from torchvision.transforms import v2  # the per-sample path only: importing torchvision takes seconds

    from data_loader.mnist_folder import MnistFolder

    files = ensure_mnist_files(data_dir, train, download)
    try:
        return MnistFolder(files, train=train, transform=v2.PILToTensor())
    except (RuntimeError, ValueError, OSError) as err:
        raise _corrupt(files, err) from None


DOWNLOAD_TIMEOUT_S = 15  # per connection and read: an unreachable mirror fails in seconds, not minutes
MAX_REASON = 60  # characters of a download error kept in the one-line message


def find_mnist_files(data_dir):
    """The folder holding all four files: <data_dir>/MNIST/raw (torchvision's layout) or <data_dir>/MNIST itself
    (the README's "link a folder holding them to data/MNIST"); None when neither does."""
    mnist = Path(data_dir) / "MNIST"
    return next((folder for folder in (mnist / "raw", mnist)
                 if all((folder / name).is_file() for name in MNIST_FILES)), None)


def linked_folder(data_dir):
    """<data_dir>/MNIST or its raw/ when it is a symbolic link: the user's own (often shared) data, which a
    download must never write into; None otherwise."""
    mnist = Path(data_dir) / "MNIST"
    return next((folder for folder in (mnist, mnist / "raw") if folder.is_symlink()), None)


def ensure_mnist_files(data_dir, train, download):
    """The folder of the four MNIST files; downloads them into <data_dir>/MNIST/raw when allowed and that is
    not a linked folder, else a one-line UserError saying where to put them."""
    found = find_mnist_files(data_dir)
    if found is not None:
        return found
    mnist, link = Path(data_dir) / "MNIST", linked_folder(data_dir)
    raw = mnist / "raw"
    if link is not None and not link.is_dir():  # ln -s with a relative target is read from the link's folder
        raise UserError(f"{link} links to {os.readlink(link)}, which is no folder (a relative target is read "
                        f"from {link.parent}); link a folder holding the four MNIST files there")
    if link is not None:
        attempt = f"{link} is a link, never downloaded into"
    elif not download:
        attempt = "download is off"
    else:
        logging.getLogger("data_loader").info(f"MNIST files missing in {raw}: downloading them")
        failure = _download(data_dir, train, raw)
        found = find_mnist_files(data_dir)
        if found is not None:
            return found
        attempt = f"download failed: {failure[:MAX_REASON]}" if failure else "the download did not bring them"
    where = raw if raw.is_dir() or not mnist.is_dir() else mnist  # the folder the user placed files in
    missing = [name for name in MNIST_FILES if not (where / name).is_file()]
    what = "all four" if len(missing) == len(MNIST_FILES) else ", ".join(missing)
    raise UserError(f"MNIST files missing in {where}: {what}; {attempt}. Put them there or link a folder "
                    f"holding them to {mnist}")


def _download(data_dir, train, raw):
    """Try torchvision's download: None, or why it failed. Folders the attempt left empty are removed."""
    import socket

    from torchvision import datasets

    made = [folder for folder in (Path(data_dir), raw.parent, raw) if not folder.exists()]
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        datasets.MNIST(data_dir, train=train, download=True)
        return None
    except Exception as err:  # no network, a proxy, a mirror down: all end the same way
        return _reason(err)
    finally:
        socket.setdefaulttimeout(previous)
        for folder in reversed(made):  # an empty raw/ would make a link placed there land in raw/raw
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()


def _reason(err):
    """The last line of a download error, without urllib's wrapping: 'Name or service not known'."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()] or [type(err).__name__]
    return re.sub(r"^<urlopen error (.*)>$", r"\1", lines[-1])


def _corrupt(raw, err):
    return UserError(f"MNIST files in {raw} are unreadable or corrupt ({err}); replace them with intact copies")


def read_idx_ubyte(path, ndim):
    """An IDX file of unsigned bytes (the MNIST format) as a uint8 tensor, read with one copy."""
    with open(path, "rb") as handle:
        header = handle.read(4 + 4 * ndim)
        if len(header) < 4 + 4 * ndim or header[:4] != bytes((0, 0, 0x08, ndim)):
            raise ValueError(f"{Path(path).name} is not an IDX file of {ndim}-d unsigned bytes")
        shape = struct.unpack(f">{ndim}I", header[4:])
        data = bytearray(math.prod(shape))
        if handle.readinto(data) != len(data) or handle.read(1):
            raise ValueError(f"{Path(path).name} does not hold the {len(data)} bytes its header announces")
    return torch.frombuffer(data, dtype=torch.uint8).view(shape)


class InMemoryMNIST(torch.utils.data.Dataset):
    """MNIST decoded once into uint8 tensors; `__getitems__` serves a normalised batch with one tensor index."""

    def __init__(self, data_dir, train=True, download=True):
        raw = ensure_mnist_files(data_dir, train, download)
        images_file, labels_file = MNIST_FILES[:2] if train else MNIST_FILES[2:]
        try:  # read directly: importing torchvision for its reader would cost seconds at start-up
            self.images = read_idx_ubyte(raw / images_file, ndim=3)  # (N, 28, 28) uint8
            self.targets = read_idx_ubyte(raw / labels_file, ndim=1).long()
            if len(self.images) != len(self.targets):
                raise ValueError(f"{len(self.images)} images but {len(self.targets)} labels")
        except (OSError, ValueError) as err:
            raise _corrupt(raw, err) from None
        self.normalize = ScaleNormalize((MNIST_MEAN,), (MNIST_STD,))

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, index):
        images, targets = self.__getitems__([index])
        return images[0], int(targets[0])

    def __getitems__(self, indices):
        index = torch.as_tensor(indices, dtype=torch.long)
        return self.normalize(self.images[index].unsqueeze(1)), self.targets[index]


def keep_batch(batch):
    """collate_fn for datasets that already return whole batches."""
    return batch
