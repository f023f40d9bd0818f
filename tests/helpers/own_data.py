"""The own-dataset example of docs/customizing.md ("Your own dataset, fast") as the docs write it: its loader
code, its config keys, and small generated images to run it on (test_own_data.py, test_export_artifacts.py)."""
import json
import re

import numpy as np
from PIL import Image

import data_loader.data_loaders as module_data
from tests.helpers.paths import REPO

SECTION = "### Your own dataset, fast"


def docs_blocks(language):
    """The code blocks of that docs section, as written: a change to the docs changes what is tested."""
    section = (REPO / "docs" / "customizing.md").read_text().split(SECTION, 1)[1]
    section = re.split(r"\n#+ ", section, maxsplit=1)[0]  # up to the next heading
    return re.findall(rf"```{language}\n(.*?)```", section, flags=re.S)


def add_example_loader(monkeypatch):
    """The docs' python, as if pasted at the end of data_loader/data_loaders.py (for this test only);
    the fixture example_loader (tests/conftest.py). Returns the namespace the docs' code ran in."""
    namespace = {"__name__": module_data.__name__}
    exec(compile("\n".join(docs_blocks("python")), "docs/customizing.md", "exec"), namespace)
    for name, value in namespace.items():
        if getattr(value, "__module__", None) == module_data.__name__:
            monkeypatch.setattr(module_data, name, value, raising=False)
    return namespace


def write_images(folder, n_train=18, n_test=5, n_classes=3):
    """Small random RGB PNGs of varied sizes, listed in train.csv and test.csv (paths relative to the csv)."""
    rng = np.random.default_rng(0)
    for split, count in (("train", n_train), ("test", n_test)):
        (folder / split).mkdir(parents=True)
        rows = ["path,label"]
        for i in range(count):
            size = (int(rng.integers(24, 40)), int(rng.integers(24, 40)), 3)
            Image.fromarray(rng.integers(0, 256, size, dtype=np.uint8)).save(folder / split / f"{i}.png")
            rows.append(f"{split}/{i}.png,{i % n_classes}")
        (folder / f"{split}.csv").write_text("\n".join(rows) + "\n")
    return folder


def example_config(tmp_path, data_dir):
    """config.json with the docs' keys replaced as the docs say, made small: 2 epochs, batches of 4."""
    config = json.loads((REPO / "config.json").read_text())
    config.update(json.loads(docs_blocks("json")[0]))
    config["data_loader"]["args"].update(data_dir=str(data_dir), batch_size=4, num_workers=0)
    config["trainer"].update(epochs=2, save_dir=str(tmp_path / "saved"), tensorboard=False)
    return config
