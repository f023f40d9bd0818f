"""Scaling out must not change the maths: on a dropout-free model, DDP (2 ranks x 64) and
accumulation (2 x 64) reach the weights of one process with batches of 128."""
import os

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import BatchSampler

import model.model as module_arch
from base import BaseModel
from base.base_data_loader import EpochSampler
from tests.helpers.cli import train_in_process
from tests.helpers.configs import shrink_config, write_config
from tests.helpers.network import free_port
from tests.helpers.runs import run_dirs
from tests.synthetic_mnist import write_synthetic_mnist

N_TRAIN = 512  # a multiple of 128: every step of every layout sees the same 128 samples
MAX_WEIGHT_DIFF = 1e-5


class DropoutFreeNet(BaseModel):
    """LeNet without dropout: the same samples give the same gradients, whatever the layout."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, kernel_size=5)
        self.conv2 = nn.Conv2d(6, 12, kernel_size=5)
        self.fc1 = nn.Linear(192, 32)
        self.fc2 = nn.Linear(32, num_classes)

    def forward(self, x):
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2(x), 2))
        x = F.relu(self.fc1(x.flatten(1)))
        return F.log_softmax(self.fc2(x), dim=1)


def register_model():
    """Make `arch.type = "DropoutFreeNet"` buildable by name, as a user's own model would be."""
    module_arch.DropoutFreeNet = DropoutFreeNet
    module_arch.__all__ = ["DropoutFreeNet"]  # defined elsewhere: listed to be buildable by name


def layout_config(root, data_dir, batch_size, accumulate_steps=1):
    """SGD with momentum: Adam would magnify float rounding where gradients are near zero."""
    config = shrink_config(root, data_dir, epochs=2, verbosity=0, monitor="off", early_stop=0,
                           accumulate_steps=accumulate_steps)
    config["arch"] = {"type": "DropoutFreeNet", "args": {}}
    config["optimizer"] = {"type": "SGD", "args": {"lr": 0.05, "momentum": 0.9}}
    config["data_loader"]["args"].update(batch_size=batch_size, validation_split=0.0)
    root.mkdir()
    return write_config(root, config)


def final_weights(root):
    (run,) = run_dirs(root / "saved")
    return torch.load(run / "model_latest.pth", weights_only=True)


def max_weight_diff(a, b):
    assert a["global_step"] and a["epoch"] == b["epoch"] == 2
    return max((a["state_dict"][k] - b["state_dict"][k]).abs().max().item() for k in a["state_dict"])


def ddp_worker(rank, world_size, port, config_paths):
    """One rank of a gloo group, set up through the environment as torchrun would."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size))
    import train
    from utils import distributed as dist

    torch.set_num_threads(1)  # as torchrun does: two ranks on a small machine, no oversubscription
    register_model()
    device = dist.init_distributed()
    try:
        for path in config_paths:
            train.main(train.parse_args(["-c", str(path)]), device)
    finally:
        dist.cleanup()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_synthetic_mnist(tmp_path_factory.mktemp("mnist512"), n_train=N_TRAIN, n_test=64)


@pytest.fixture
def registered_model(monkeypatch):
    monkeypatch.setattr(module_arch, "DropoutFreeNet", DropoutFreeNet, raising=False)
    monkeypatch.setattr(module_arch, "__all__", ["DropoutFreeNet"], raising=False)


def test_two_rank_step_sees_the_one_process_batch():
    indices = torch.arange(1000, 1000 + N_TRAIN)
    single = EpochSampler(indices, shuffle=True, seed=7)
    ranks = [EpochSampler(indices, shuffle=True, seed=7, rank=r, world_size=2) for r in (0, 1)]
    for sampler in (single, *ranks):
        sampler.set_epoch(3)
    batches = [BatchSampler(single, 128, drop_last=False), *(BatchSampler(r, 64, drop_last=False) for r in ranks)]
    steps = list(zip(*batches, strict=True))
    assert len(steps) == N_TRAIN // 128
    for whole, part0, part1 in steps:
        assert len(part0) == len(part1) == 64
        assert sorted(part0 + part1) == sorted(whole)


@pytest.mark.slow
def test_ddp_and_accumulation_match_one_big_batch(tmp_path, data_dir, registered_model):
    layouts = {
        "one_128": (128, 1, 1),
        "accumulate_2x64": (64, 2, 1),
        "ddp_2x64": (64, 1, 2),
        "ddp_accumulate_2x2x32": (32, 2, 2),  # micro-steps under no_sync, one all-reduce per step
    }
    configs = {name: layout_config(tmp_path / name, data_dir, batch, accumulate)
               for name, (batch, accumulate, _) in layouts.items()}
    for name, (_, _, world) in layouts.items():
        if world == 1:
            train_in_process("-c", configs[name])
    ddp_runs = [configs[name] for name, (_, _, world) in layouts.items() if world == 2]
    # fork: the ranks inherit the imported modules (spawn would import torch again in each)
    mp.start_processes(ddp_worker, args=(2, free_port(), ddp_runs), nprocs=2, join=True, start_method="fork")

    reference = final_weights(tmp_path / "one_128")
    assert reference["global_step"] == 2 * N_TRAIN // 128
    for name in ("accumulate_2x64", "ddp_2x64", "ddp_accumulate_2x2x32"):
        result = final_weights(tmp_path / name)
        assert max_weight_diff(result, reference) <= MAX_WEIGHT_DIFF, name
    # the check has teeth: training moved the weights far more than the tolerance
    torch.manual_seed(123)  # the config's seed: the weights every layout started from
    untrained = DropoutFreeNet()
    assert max((reference["state_dict"][k] - v).abs().max().item()
               for k, v in untrained.state_dict().items()) > 100 * MAX_WEIGHT_DIFF
