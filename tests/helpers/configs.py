"""The real config.json made small for a test, and written where a run reads it."""
import json
from pathlib import Path

from tests.helpers.paths import REPO


def shrink_config(tmp_path, data_dir, **trainer):
    """config.json made small: synthetic data, 2 epochs, output under tmp_path.

    Keyword arguments override trainer keys. Returns the config as a dict.
    """
    config = json.loads((REPO / "config.json").read_text())
    config["data_loader"]["args"].update(data_dir=str(data_dir), batch_size=64, download=False)
    config["trainer"].update(epochs=2, save_dir=str(tmp_path / "saved"), verbosity=2, tensorboard=False)
    config["trainer"].update(trainer)
    return config


def write_config(tmp_path, config, name="config.json"):
    path = Path(tmp_path) / name
    path.write_text(json.dumps(config, indent=2))
    return path
