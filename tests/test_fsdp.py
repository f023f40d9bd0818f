"""trainer.strategy "fsdp" (FSDP2) at 2 gloo ranks against the same run under DDP, and its checkpoints in one
process; the one-process and bad-input cases are quick."""
import json

import pandas as pd
import pytest
import torch

import test as test_entry
from runs.checkpoint_file import load_checkpoint
from tests.helpers.cli import run_cli, train_in_process
from tests.helpers.configs import shrink_config, write_config
from tests.helpers.errors import check_refused
from tests.helpers.runs import run_dirs
from tests.helpers.snapshots import snapshot_bytes_and_mtimes
from tests.helpers.strategy_runs import launch, resume_copy

CLIPPED = {"clip_grad_norm": 0.05, "accumulate_steps": 3}  # 0.05: below LeNet's gradient norm, so it clips


@pytest.fixture(scope="module")
def runs(tmp_path_factory, synthetic_data_dir):
    root = tmp_path_factory.mktemp("strategies")
    return {(strategy, clipped): launch(root / f"{strategy}{'_clipped' * clipped}", synthetic_data_dir, strategy,
                                       **(CLIPPED if clipped else {}))
            for strategy in ("ddp", "fsdp") for clipped in (False, True)}


def latest(run):
    """model_latest.pth in the single-file format (an FSDP run's is sharded: read whole in this process)."""
    return load_checkpoint(run["run"] / "model_latest.pth")


@pytest.mark.slow
def test_fsdp_weights_and_optimizer_equal_ddp_bitwise(runs):
    ddp, fsdp = latest(runs["ddp", False]), latest(runs["fsdp", False])
    assert list(fsdp["state_dict"]) == list(ddp["state_dict"])  # plain keys: no wrapper prefixes
    for key, value in ddp["state_dict"].items():
        assert torch.equal(value, fsdp["state_dict"][key]), key
    assert fsdp["optimizer"]["param_groups"] == ddp["optimizer"]["param_groups"]  # indexed like a plain optimizer
    for index, state in ddp["optimizer"]["state"].items():
        for name, value in state.items():
            assert torch.equal(value, fsdp["optimizer"]["state"][index][name]), (index, name)
    ranks = [torch.load(runs["fsdp", False]["evidence"] / f"weights_rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert all(torch.equal(ranks[0][k], ranks[1][k]) for k in ranks[0])
    # validation ran the sharded model on both ranks (2 batches and 1): the same metrics as DDP's
    pd.testing.assert_frame_equal(pd.read_csv(runs["ddp", False]["run"] / "metrics.csv").filter(like="val_"),
                                  pd.read_csv(runs["fsdp", False]["run"] / "metrics.csv").filter(like="val_"))


@pytest.mark.slow
def test_fsdp_with_clipping_and_accumulation_within_1e6_of_ddp(runs):
    ddp, fsdp = latest(runs["ddp", True]), latest(runs["fsdp", True])
    plain = latest(runs["ddp", False])
    for key, value in ddp["state_dict"].items():
        assert torch.allclose(value, fsdp["state_dict"][key], rtol=0, atol=1e-6), key
    # the options acted: without them the weights are elsewhere
    assert max((plain["state_dict"][k] - v).abs().max() for k, v in ddp["state_dict"].items()) > 1e-3


@pytest.mark.slow
def test_fsdp_checkpoint_continues_in_one_process_and_tests_alike(runs):
    run = runs["fsdp", False]["run"]
    saved = latest(runs["fsdp", False])
    # test.py in one process on the 2-rank FSDP checkpoint: what test.py under torchrun found
    test_entry.main(test_entry.parse_args(["-r", str(run / "model_best.pth")]))
    single = json.loads((run / "model_best.test.json").read_text())
    assert single["n_samples"] == runs["fsdp", False]["test"]["n_samples"] == 200
    for name, value in single["metrics"].items():
        assert value == pytest.approx(runs["fsdp", False]["test"]["metrics"][name], abs=1e-6), name

    assert saved["world_size"] == 2 and (saved["epoch"], saved["global_step"]) == (2, 36)
    train_in_process("-r", run / "model_latest.pth", "-o", "trainer.epochs=3")
    resumed = torch.load(run / "checkpoint-epoch3.pth", weights_only=True)
    # one process takes all 567 training samples: 36 batches of 16 after the 36 two-rank steps
    assert (resumed["epoch"], resumed["global_step"], resumed["world_size"]) == (3, 72, 1)
    assert list(pd.read_csv(run / "metrics.csv")["epoch"]) == [1, 2, 3]
    assert not any(torch.equal(v, resumed["state_dict"][k]) for k, v in saved["state_dict"].items())  # it trained


@pytest.mark.slow
def test_fsdp_resume_at_two_ranks_loads_the_checkpoint_exactly(runs, tmp_path):
    """Both continue the same checkpoint (DDP's, bitwise FSDP's): a wrong load under FSDP would part them."""
    ddp = resume_copy(runs["ddp", False]["run"], tmp_path / "ddp", "ddp", epochs=3)
    fsdp = resume_copy(runs["ddp", False]["run"], tmp_path / "fsdp", "fsdp", epochs=3)
    assert (fsdp["epoch"], fsdp["world_size"]) == (3, 2)
    for key, value in ddp["state_dict"].items():
        assert torch.equal(value, fsdp["state_dict"][key]), key
    for index, state in ddp["optimizer"]["state"].items():
        assert all(torch.equal(value, fsdp["optimizer"]["state"][index][name]) for name, value in state.items())


def test_fsdp_in_one_process_trains_the_plain_model_and_says_so(tmp_path, synthetic_data_dir):
    config = shrink_config(tmp_path, synthetic_data_dir, strategy="fsdp", epochs=1, len_epoch=2)
    train_in_process("-c", write_config(tmp_path, config))
    (run,) = run_dirs(tmp_path / "saved")
    log = next((tmp_path / "saved" / "log").glob("*/*/info.log")).read_text()
    assert "trainer.strategy \"fsdp\": one process, nothing to shard" in log
    assert torch.load(run / "model_latest.pth", weights_only=True)["epoch"] == 1


@pytest.mark.parametrize("trainer, expected", [
    ({"strategy": "fdsp"}, ["unknown trainer.strategy 'fdsp'", "did you mean 'fsdp'"]),
    ({"strategy": "zero3"}, ["trainer.strategy must be \"ddp\"", "'zero3'"]),
    ({"strategy": "fsdp", "amp": "fp16"}, ["trainer.amp \"fp16\" is not supported with trainer.strategy \"fsdp\"",
                                           "bf16"]),
])
def test_bad_strategy_is_one_line(trainer, expected, tmp_path, synthetic_data_dir, monkeypatch, capsys):
    path = write_config(tmp_path, shrink_config(tmp_path, synthetic_data_dir, **trainer))
    before = snapshot_bytes_and_mtimes(tmp_path)
    check_refused(run_cli("train", ["-c", path], monkeypatch, capsys), expected, before, tmp_path)


def test_fsdp_units_default_to_children_with_parameters_and_the_model_may_choose():
    from model.model import ImageClassifier, MnistModel
    from utils.sharding import fsdp_units

    lenet = MnistModel()
    assert fsdp_units(lenet) == [lenet.conv1, lenet.conv2, lenet.fc1, lenet.fc2]  # not the parameterless dropout

    class Blocks(ImageClassifier):
        def fsdp_units(self):
            return [self.features]

    model = Blocks(num_classes=10)
    assert fsdp_units(model) == [model.features]
    assert fsdp_units(torch.nn.Sequential(torch.nn.ReLU(), torch.nn.Linear(2, 2)))[0].in_features == 2  # no hook


def test_ema_with_fsdp_under_torchrun_is_accepted(monkeypatch):
    """The average is kept sharded like the model (tests/test_ema_fsdp.py): nothing to refuse or note."""
    from utils import distributed
    from utils.sharding import check_strategy

    monkeypatch.setattr(distributed, "is_distributed", lambda: True)
    assert check_strategy("fsdp", False) is None
    assert check_strategy("ddp", False) is None
