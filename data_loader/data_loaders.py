"""Data loaders named in config.json."""
from base import BaseDataLoader
from data_loader.mnist import InMemoryMNIST, keep_batch, load_mnist, mnist_transform


class MnistDataLoader(BaseDataLoader):
    """MNIST with ToTensor + Normalize((0.1307,), (0.3081,)); `training=False` gives the test split.

    in_memory (default): decode once, serve whole batches by index, in the main
    process (num_workers is not used: a batch is one tensor index, and worker
    processes would only add copies). in_memory=False: torchvision's
    per-sample path through `num_workers` workers, the place to add augmentation.
    """

    def __init__(self, data_dir, batch_size, shuffle=True, validation_split=0.0, num_workers=1,
                 training=True, in_memory=True, download=True, seed=0):
        self.data_dir = data_dir
        if in_memory:
            self.dataset = InMemoryMNIST(data_dir, train=training, download=download)
            collate_fn, num_workers = keep_batch, 0
        else:
            self.dataset = load_mnist(data_dir, training, download, transform=mnist_transform())
            collate_fn = None
        kwargs = {} if collate_fn is None else {"collate_fn": collate_fn}
        super().__init__(self.dataset, batch_size, shuffle, validation_split, num_workers,
                         seed=seed, **kwargs)
