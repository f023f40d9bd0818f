"""torchvision's MNIST read from the folder that holds the four files, whichever layout it has (mnist.py finds it).
Its own module: importing torchvision takes seconds, and DataLoader workers must be able to import the class."""
from torchvision import datasets


class MnistFolder(datasets.MNIST):
    """datasets.MNIST whose files are in `files` (a raw/ folder, or the folder linked to data/MNIST) rather than
    <root>/MNIST/raw; it never downloads: mnist.ensure_mnist_files does, and never into a linked folder."""

    def __init__(self, files, train=True, transform=None):
        self.files = str(files)
        super().__init__(self.files, train=train, transform=transform, download=False)

    @property
    def raw_folder(self):
        return self.files
