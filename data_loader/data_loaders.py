"""Data loaders named in config.json."""
from base import BaseDataLoader
from base.batch_transform import ScaleNormalize
from data_loader.mnist import MNIST_MEAN, MNIST_STD, InMemoryMNIST, keep_batch, load_mnist


class MnistDataLoader(BaseDataLoader):
    """MNIST with ToTensor + Normalize((0.1307,), (0.3081,)); `training=False` gives the test split. in_memory:
    whole batches by index in the main process (no num_workers: they would only add copies); in_memory=False:
    torchvision's per-sample path, the place to add augmentation."""

    def __init__(self, data_dir, batch_size, shuffle=True, validation_split=0.0, num_workers=None,
                 training=True, in_memory=True, download=True, seed=0):
        self.data_dir = data_dir
        if in_memory:
            self.dataset = InMemoryMNIST(data_dir, train=training, download=download)
            kwargs = {"collate_fn": keep_batch, "num_workers": 0}
        else:
            self.dataset = load_mnist(data_dir, training, download)
            kwargs = {"num_workers": num_workers,
                      "batch_transform": ScaleNormalize((MNIST_MEAN,), (MNIST_STD,))}
        super().__init__(self.dataset, batch_size, shuffle, validation_split, seed=seed, **kwargs)
