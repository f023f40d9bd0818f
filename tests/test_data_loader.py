"""BaseDataLoader / MnistDataLoader: the validation split, reproducibility, both data paths, len_epoch."""
import numpy as np
import pytest
import torch

from data_loader.data_loaders import MnistDataLoader
from tests.helpers.cli import train_in_process
from tests.helpers.configs import shrink_config, write_config

N_TRAIN = 600  # samples in the synthetic training split (see conftest)


def make_loader(data_dir, **kwargs):
    args = {"batch_size": 64, "shuffle": True, "validation_split": 0.1, "download": False, "seed": 0}
    return MnistDataLoader(str(data_dir), **{**args, **kwargs})


def split_of(loader):
    """(train indices, validation indices) as Python sets, read from the samplers."""
    train = {i for batch in loader.batch_sampler for i in batch}
    valid = {i for batch in loader.split_validation().batch_sampler for i in batch}
    return train, valid


def count_samples(loader):
    return sum(target.numel() for _, target in loader)


@pytest.mark.parametrize("split, n_valid", [(0.1, 60), (0.25, 150), (100, 100), (1, 1)])
def test_split_sizes_by_ratio_and_by_count(synthetic_data_dir, split, n_valid):
    loader = make_loader(synthetic_data_dir, validation_split=split)

    assert loader.n_samples == N_TRAIN - n_valid
    assert count_samples(loader) == N_TRAIN - n_valid
    assert count_samples(loader.split_validation()) == n_valid


def test_train_and_valid_are_disjoint_and_cover_the_data_set(synthetic_data_dir):
    train, valid = split_of(make_loader(synthetic_data_dir, validation_split=0.2))

    assert not train & valid
    assert train | valid == set(range(N_TRAIN))
    assert len(valid) == 120


def test_split_is_reproducible_for_a_seed_and_differs_for_another(synthetic_data_dir):
    first = split_of(make_loader(synthetic_data_dir, seed=7))
    again = split_of(make_loader(synthetic_data_dir, seed=7))
    other = split_of(make_loader(synthetic_data_dir, seed=8))

    assert first == again
    assert first[1] != other[1]


def test_split_is_not_the_first_samples(synthetic_data_dir):
    _, valid = split_of(make_loader(synthetic_data_dir, validation_split=60))

    assert valid != set(range(60)) and valid != set(range(N_TRAIN - 60, N_TRAIN))


def test_construction_leaves_numpys_global_rng_alone(synthetic_data_dir):
    # the classic template calls np.random.seed(0) here, resetting the user's stream
    np.random.seed(2024)
    before = np.random.get_state(legacy=False)
    torch_before = torch.get_rng_state()

    loader = make_loader(synthetic_data_dir)
    loader.split_validation()

    after = np.random.get_state(legacy=False)
    assert np.array_equal(before["state"]["key"], after["state"]["key"])
    assert before["state"]["pos"] == after["state"]["pos"]
    assert torch.equal(torch_before, torch.get_rng_state())


def test_zero_split_gives_no_validation_loader(synthetic_data_dir):
    loader = make_loader(synthetic_data_dir, validation_split=0)

    assert loader.split_validation() is None
    assert count_samples(loader) == N_TRAIN


@pytest.mark.parametrize("split", [1.0, 1.5, N_TRAIN, N_TRAIN + 1])
def test_a_split_leaving_no_training_data_is_refused(synthetic_data_dir, split):
    from utils.errors import UserError

    with pytest.raises(UserError, match="validation_split"):
        make_loader(synthetic_data_dir, validation_split=split)


def ordered_batches(data_dir, in_memory):
    loader = make_loader(data_dir, shuffle=False, validation_split=0, in_memory=in_memory, num_workers=0)
    batches = list(loader)
    return torch.cat([images for images, _ in batches]), torch.cat([targets for _, targets in batches])


def test_in_memory_and_per_sample_paths_give_identical_tensors(synthetic_data_dir):
    fast_images, fast_targets = ordered_batches(synthetic_data_dir, in_memory=True)
    slow_images, slow_targets = ordered_batches(synthetic_data_dir, in_memory=False)

    assert fast_images.shape == slow_images.shape == (N_TRAIN, 1, 28, 28)
    assert fast_images.dtype == slow_images.dtype == torch.float32
    assert torch.equal(fast_images, slow_images)  # bit for bit, not merely close
    assert torch.equal(fast_targets, slow_targets)
    # normalised as ToTensor + Normalize((0.1307,), (0.3081,)): 255 -> (1 - 0.1307) / 0.3081
    assert fast_images.max().item() == pytest.approx((1 - 0.1307) / 0.3081)


def test_both_paths_serve_the_same_shuffled_batches(synthetic_data_dir):
    loaders = [make_loader(synthetic_data_dir, in_memory=flag, num_workers=0) for flag in (True, False)]
    for loader in loaders:
        loader.set_epoch(3)

    (fast_images, fast_targets), (slow_images, slow_targets) = (next(iter(loader)) for loader in loaders)

    assert torch.equal(fast_images, slow_images) and torch.equal(fast_targets, slow_targets)


def test_test_split_is_served_with_training_false(synthetic_data_dir):
    loader = make_loader(synthetic_data_dir, training=False, validation_split=0, shuffle=False)

    assert count_samples(loader) == 200


@pytest.mark.parametrize("len_epoch", [4, 13])  # fewer / more batches than one pass (540 / 64 = 9)
def test_len_epoch_runs_exactly_that_many_batches(tmp_path, synthetic_data_dir, len_epoch):
    # the classic template breaks out only after batch len_epoch, one step too late
    cfg = shrink_config(tmp_path, synthetic_data_dir, len_epoch=len_epoch, epochs=2)
    config = train_in_process("-c", write_config(tmp_path, cfg))

    first = torch.load(config.save_dir / "checkpoint-epoch1.pth", weights_only=True)
    second = torch.load(config.save_dir / "checkpoint-epoch2.pth", weights_only=True)
    assert first["global_step"] == len_epoch
    assert second["global_step"] == 2 * len_epoch
