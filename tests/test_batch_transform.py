"""The per-sample path: uint8 samples through the workers, ToTensor + Normalize's arithmetic once
per batch; bit-identical batches, a classic loop still gets floats, workers picked from the cores."""
import logging

import pytest
import torch
from torchvision import datasets, transforms

import base.base_data_loader as base_loader
from base.batch_transform import defer_batch_transform
from data_loader.data_loaders import MnistDataLoader
from tests.helpers.cli import train_in_process
from tests.helpers.configs import shrink_config, write_config

CLASSIC = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])


def per_sample_loader(data_dir, **kwargs):
    args = {"batch_size": 64, "validation_split": 0.1, "download": False, "in_memory": False, "num_workers": 0}
    return MnistDataLoader(str(data_dir), **{**args, **kwargs})


def classic_batch(data_dir, indices):
    dataset = datasets.MNIST(str(data_dir), train=True, download=False, transform=CLASSIC)
    return torch.stack([dataset[i][0] for i in indices])


def test_batches_are_bit_identical_to_to_tensor_and_normalize(synthetic_data_dir):
    loader = per_sample_loader(synthetic_data_dir)
    indices = next(iter(loader.batch_sampler))
    loader.set_epoch(1)
    data, _ = next(iter(loader))  # a loop that knows nothing of the split: floats, transformed here
    assert data.dtype == torch.float32
    assert torch.equal(data, classic_batch(synthetic_data_dir, indices))


def test_the_trainer_gets_uint8_batches_and_the_step_to_run_on_its_device(synthetic_data_dir):
    loader = per_sample_loader(synthetic_data_dir)
    valid = loader.split_validation()
    transform = defer_batch_transform(loader)
    indices = next(iter(loader.batch_sampler))
    loader.set_epoch(1)
    raw, _ = next(iter(loader))
    assert raw.dtype == torch.uint8  # a quarter of float32's bytes between processes
    assert torch.equal(transform(raw), classic_batch(synthetic_data_dir, indices))
    assert next(iter(valid))[0].dtype == torch.float32  # the validation loader was not taken over


def test_training_on_the_per_sample_path_equals_the_in_memory_path(tmp_path, synthetic_data_dir):
    weights = {}
    for in_memory in (True, False):
        cfg = shrink_config(tmp_path / str(in_memory), synthetic_data_dir, epochs=1, len_epoch=4)
        cfg["data_loader"]["args"].update(in_memory=in_memory, num_workers=0)
        config = train_in_process("-c", write_config(tmp_path, cfg, f"{in_memory}.json"))
        weights[in_memory] = torch.load(config.save_dir / "model_latest.pth", weights_only=True)["state_dict"]
    assert all(torch.equal(weights[True][k], weights[False][k]) for k in weights[True])


@pytest.mark.parametrize("cores, local_world, expected", [(2, 1, 0), (3, 1, 0), (4, 1, 3), (16, 1, 8),
                                                           (16, 2, 7), (16, 8, 0)])
def test_workers_from_this_processs_share_of_the_cores(monkeypatch, cores, local_world, expected):
    monkeypatch.setattr(base_loader.os, "sched_getaffinity", lambda pid: set(range(cores)))
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(local_world))
    assert base_loader.default_num_workers() == expected


def test_an_explicit_num_workers_wins_and_the_choice_is_logged_once(synthetic_data_dir, monkeypatch, caplog):
    monkeypatch.setattr(base_loader.os, "sched_getaffinity", lambda pid: set(range(16)))
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    with caplog.at_level(logging.INFO, logger="data_loader"):
        assert per_sample_loader(synthetic_data_dir, num_workers=1).num_workers == 1
        assert caplog.messages == []
        assert per_sample_loader(synthetic_data_dir, num_workers=None).num_workers == 8
    assert caplog.messages == ["data_loader.args.num_workers not set: using 8 (16 cores for this process)"]


def test_a_config_may_leave_num_workers_to_the_cores():
    from utils.config.check import check_sections
    from utils.errors import UserError

    config = {"data_loader": {"type": "MnistDataLoader", "args": {"batch_size": 8, "num_workers": None}}}
    check_sections(config, ["data_loader"])
    config["data_loader"]["args"]["num_workers"] = -1
    with pytest.raises(UserError, match="num_workers must be a non-negative integer, or null"):
        check_sections(config, ["data_loader"])
