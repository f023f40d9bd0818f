"""End to end on the real MNIST: one epoch of the default config, then test.py on model_best.pth."""
import json
import time

import pandas as pd
import pytest

import test as test_script
from tests.helpers.cli import train_in_process
from tests.helpers.paths import REPO
from tests.helpers.skips import needs_real_mnist

pytestmark = [pytest.mark.slow, pytest.mark.real_data, needs_real_mnist]


def test_one_epoch_of_the_default_config_learns_mnist(tmp_path, monkeypatch, capsys, record_property):
    monkeypatch.chdir(REPO)  # the default config's data_dir "data/" is relative to the repository
    started = time.perf_counter()
    config = train_in_process("-c", REPO / "config.json", "-o", "trainer.epochs=1",
                              "-o", f"trainer.save_dir={tmp_path / 'saved'}")
    wall = time.perf_counter() - started

    assert config["data_loader"]["args"]["batch_size"] == 128  # the default config, not a shrunk one
    epoch = pd.read_csv(config.save_dir / "metrics.csv").iloc[0]
    assert epoch["val_accuracy"] >= 0.95

    best = config.save_dir / "model_best.pth"
    test_script.main(test_script.parse_args(["-r", str(best)]))
    results = json.loads(best.with_name("model_best.test.json").read_text())
    assert results["n_samples"] == 10000
    assert results["metrics"]["accuracy"] >= 0.95

    record_property("epoch_time_s", float(epoch["epoch_time"]))
    with capsys.disabled():
        print(f"\nreal MNIST, 1 epoch of config.json: epoch_time {epoch['epoch_time']:.1f} s "
              f"(train + validation), whole run {wall:.1f} s, val_accuracy {epoch['val_accuracy']:.4f}, "
              f"test accuracy {results['metrics']['accuracy']:.4f}")
