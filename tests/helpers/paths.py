"""Where the tests find the project and the real MNIST files."""
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# the real files: in data/MNIST/raw, or directly in a folder linked to data/MNIST (both layouts the README allows)
REAL_MNIST = next((folder for folder in (REPO / "data" / "MNIST" / "raw", REPO / "data" / "MNIST")
                   if (folder / "train-images-idx3-ubyte").is_file()), REPO / "data" / "MNIST" / "raw")
