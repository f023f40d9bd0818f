"""A near-miss spelling of a trainer option is refused, naming the option meant; far-off keys pass.

A misspelt option that passes silently trains with the default instead (no early stopping, no
clipping) and nobody notices. The checker's cutoff decides which spellings are near misses, so the
cases here are the realistic ones, close to the cutoff (similarity ratios 0.77-0.97); one below it
(0.727) is caught by comparing the names without their underscores (0.8).
Most run the parser in-process; one runs `python train.py` for the whole contract.
"""
import subprocess
import sys

import pytest

from tests.helpers.configs import shrink_config, write_config
from tests.helpers.paths import REPO
from utils.config.trainer_options import read_trainer_options
from utils.errors import UserError

# misspelt key -> (a value valid for the option meant, the option meant)
TYPOS = {
    "early_stopping": (5, "early_stop"),           # difflib ratio 0.833
    "earlystop": (5, "early_stop"),                # 0.947
    "clip_grad": (1.0, "clip_grad_norm"),          # 0.783
    "clip_norm": (1.0, "clip_grad_norm"),          # 0.783
    "accumulate": (2, "accumulate_steps"),         # 0.769
    "accumulation_steps": (2, "accumulate_steps"),  # 0.882
    "determinism": (True, "deterministic"),        # 0.833
    "save_perid": (2, "save_period"),              # 0.952
    "tensorbaord": (True, "tensorboard"),          # 0.909
    "check_point_interval": ("10min", "checkpoint_interval"),  # 0.974
    "lenepoch": (10, "len_epoch"),                 # 0.941
    "log_steps": (10, "log_step"),                 # 0.941
    "keeplast": (3, "keep_last"),                  # 0.941
}

TYPOS["clipgrad"] = (1.0, "clip_grad_norm")  # 0.727 as written, below the cutoff; 0.8 without underscores
CASES = list(TYPOS)


@pytest.mark.parametrize("typo", CASES)
def test_a_near_miss_trainer_option_is_refused_naming_the_option_meant(typo):
    value, meant = TYPOS[typo]
    with pytest.raises(UserError) as refused:
        read_trainer_options({"epochs": 1, typo: value})
    message = str(refused.value)
    assert "\n" not in message
    assert f"unknown key trainer.{typo}" in message
    assert f"did you mean trainer.{meant}?" in message


def test_a_key_far_from_every_option_passes_to_the_users_own_trainer():
    options = read_trainer_options({"epochs": 1, "ema_decay": 0.999, "warmup": 100})
    assert options.epochs == 1 and options.early_stop == 0


@pytest.mark.parametrize("typo", ["clip_grad"])  # the closest to the cutoff (0.783)
def test_train_py_refuses_a_misspelt_option_before_writing_anything(typo, tmp_path, synthetic_data_dir):
    value, meant = TYPOS[typo]
    config = write_config(tmp_path, shrink_config(tmp_path, synthetic_data_dir, **{typo: value}))
    result = subprocess.run([sys.executable, str(REPO / "train.py"), "-c", str(config)], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    lines = result.stderr.splitlines()
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert f"trainer.{typo}" in lines[0] and f"did you mean trainer.{meant}?" in lines[0]
    assert not (tmp_path / "saved").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]
