"""The classic test.py with n_gpu > 1 wraps the model in DataParallel, then loads the checkpoint into the
wrapper; our checkpoints hold the unwrapped model's weights (no `module.`), so that fails. The README's
"Differences from the classic template" says so and gives two fixes; both are checked here.

No GPU needed: without GPUs DataParallel is a pass-through wrapper whose keys carry `module.` all the same.
(A load_state_dict pre-hook on the inner model cannot bridge this: DataParallel's own load refuses the
unprefixed keys first, and the inner model is handed only the keys under `module.`, none here.)
"""
import pytest
import torch
from torch.nn import DataParallel

from model.model import MnistModel
from tests.helpers.cli import train_in_process
from tests.helpers.configs import shrink_config, write_config
from tests.helpers.paths import REPO

CLASSIC_FAILURE = 'Missing key(s) in state_dict: "module.conv1.weight"'


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, synthetic_data_dir):
    """model_latest.pth of a one-batch run of train.py."""
    tmp = tmp_path_factory.mktemp("dp")
    config = train_in_process("-c", write_config(tmp, shrink_config(tmp, synthetic_data_dir, epochs=1, len_epoch=1)))
    return torch.load(config.save_dir / "model_latest.pth", weights_only=True)


def outputs(model, inputs):
    model.eval()
    with torch.no_grad():
        return model(inputs)


def test_the_classic_n_gpu_branch_fails_as_the_readme_says(checkpoint):
    assert not any(key.startswith("module.") for key in checkpoint["state_dict"])
    model = DataParallel(MnistModel())  # the classic test.py: wrap first ...
    with pytest.raises(RuntimeError) as failure:
        model.load_state_dict(checkpoint["state_dict"])  # ... then load
    assert CLASSIC_FAILURE in str(failure.value)
    assert 'Unexpected key(s) in state_dict: "conv1.weight"' in str(failure.value)
    assert CLASSIC_FAILURE in (REPO / "README.md").read_text()


def test_the_readmes_two_fixes_load_our_checkpoint_into_a_dataparallel_model(checkpoint):
    inputs = torch.randn(8, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    plain = MnistModel()
    plain.load_state_dict(checkpoint["state_dict"])
    expected = outputs(plain, inputs)

    loaded_first = MnistModel()
    loaded_first.load_state_dict(checkpoint["state_dict"])  # load the weights before wrapping
    wrapped_after = DataParallel(loaded_first)
    through_module = DataParallel(MnistModel())
    through_module.module.load_state_dict(checkpoint["state_dict"])  # or load into model.module
    for model in (wrapped_after, through_module):
        assert torch.equal(outputs(model, inputs), expected)
    assert not torch.equal(outputs(DataParallel(MnistModel()), inputs), expected)  # the weights matter
