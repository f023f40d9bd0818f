"""The README's fine-tune example, taken literally: on the two-epoch run's epoch-2 checkpoint it trains 3 more
epochs (trainer.epochs counts on from the checkpoint's epoch), in a new run at the lower lr."""
import json
import re

import pandas as pd

from tests.helpers.cli import train_in_process
from tests.helpers.configs import shrink_config, write_config
from tests.helpers.paths import REPO
from tests.helpers.runs import run_dirs


def readme_partial_json():
    """The JSON the README's `echo '...' > partial.json` line writes."""
    [text] = re.findall(r"^echo '(.*)' > partial\.json$", (REPO / "README.md").read_text(), flags=re.MULTILINE)
    return json.loads(text)


def test_the_readme_fine_tune_trains_three_more_epochs(tmp_path, synthetic_data_dir, one_thread):
    train_in_process("-c", write_config(tmp_path, shrink_config(tmp_path, synthetic_data_dir, epochs=2)))
    [first] = run_dirs(tmp_path / "saved")
    partial = readme_partial_json()

    tuned = train_in_process("-c", write_config(tmp_path, partial, "partial.json"),
                             "-r", first / "checkpoint-epoch2.pth")

    assert tuned.save_dir != first
    assert pd.read_csv(tuned.save_dir / "metrics.csv")["epoch"].tolist() == [3, 4, 5]
    assert tuned.config["optimizer"]["args"]["lr"] == partial["optimizer"]["args"]["lr"] == 0.0001
