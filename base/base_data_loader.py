"""BaseDataLoader: a DataLoader with a reproducible train/validation split.

Sample order is a pure function of (seed, epoch), like DistributedSampler's,
so a resumed run sees exactly the batches the uninterrupted run would have,
and under torch.distributed each rank sees its own shard.
"""
import math

import torch
from torch.utils.data import DataLoader, DistributedSampler, Sampler
from torch.utils.data.dataloader import default_collate

from utils import distributed as dist
from utils.errors import UserError
from utils.seed import seed_worker


class EpochBatchSampler(Sampler):
    """Batches of training indices, reshuffled per epoch and sharded per rank."""

    def __init__(self, indices, batch_size, shuffle, seed, rank=0, world_size=1, drop_last=False):
        self.indices = torch.as_tensor(indices, dtype=torch.long)
        self.batch_size = batch_size
        self.drop_last = drop_last
        # DistributedSampler pads every rank to the same length so that DDP ranks
        # run the same number of steps; with one rank it is a plain (seeded) shuffle.
        self.sampler = DistributedSampler(range(len(self.indices)), num_replicas=world_size, rank=rank,
                                          shuffle=shuffle, seed=seed)
        self.skip = 0

    def set_epoch(self, epoch):
        self.sampler.set_epoch(epoch)

    def skip_batches(self, count):
        """Leave out the first `count` batches of the next pass (mid-epoch resume)."""
        self.skip = count

    def __iter__(self):
        order = self.indices[list(self.sampler)]
        batches = torch.split(order, self.batch_size)
        if self.drop_last and len(order) % self.batch_size:
            batches = batches[:-1]
        skip, self.skip = self.skip, 0
        for batch in batches[skip:]:
            yield batch.tolist()

    def __len__(self):
        count = len(self.sampler)
        return count // self.batch_size if self.drop_last else math.ceil(count / self.batch_size)


class ShardBatchSampler(Sampler):
    """Validation batches in a fixed order; rank r takes every world_size-th sample.

    No padding: every sample is seen exactly once over all ranks, so summed
    metrics give exact global averages.
    """

    def __init__(self, indices, batch_size, rank=0, world_size=1):
        self.indices = torch.as_tensor(indices, dtype=torch.long)[rank::world_size]
        self.batch_size = batch_size

    def __iter__(self):
        for batch in torch.split(self.indices, self.batch_size):
            yield batch.tolist()

    def __len__(self):
        return math.ceil(len(self.indices) / self.batch_size)


class BaseDataLoader(DataLoader):
    """Base class for all data loaders: training batches plus `split_validation()`."""

    def __init__(self, dataset, batch_size, shuffle, validation_split, num_workers,
                 collate_fn=default_collate, seed=0, drop_last=False):
        self.validation_split = validation_split
        self.shuffle = shuffle
        self.seed = 0 if seed is None else int(seed)
        train_idx, valid_idx = self._split_indices(len(dataset), validation_split, self.seed)
        self.n_samples = len(train_idx)
        self.train_indices = train_idx
        rank, world = dist.get_rank(), dist.get_world_size()
        sampler = EpochBatchSampler(train_idx, batch_size, shuffle, self.seed, rank, world, drop_last)
        self.valid_sampler = ShardBatchSampler(valid_idx, batch_size, rank, world) if len(valid_idx) else None
        self.generator = torch.Generator()  # worker seeds, kept apart from the model's RNG
        self.init_kwargs = {
            "dataset": dataset,
            "collate_fn": collate_fn,
            "num_workers": num_workers,
            "pin_memory": torch.cuda.is_available(),
            "persistent_workers": num_workers > 0,
            "worker_init_fn": seed_worker if num_workers > 0 else None,
        }
        super().__init__(batch_sampler=sampler, generator=self.generator, **self.init_kwargs)
        self.set_epoch(1)

    @property
    def samples_per_batch(self):
        return self.batch_sampler.batch_size

    def set_epoch(self, epoch):
        """Fix the shuffle and the worker seeds of `epoch` (call before each epoch)."""
        self.batch_sampler.set_epoch(epoch)
        self.generator.manual_seed(self.seed * 100003 + epoch)

    @staticmethod
    def _split_indices(n_samples, split, seed):
        if split == 0:
            return torch.arange(n_samples), torch.arange(0)
        if isinstance(split, int) and not isinstance(split, bool):
            len_valid = split
        else:
            len_valid = int(n_samples * split)
        if not 0 <= len_valid < n_samples or not (isinstance(split, int) or 0 <= split < 1):
            raise UserError(f"data_loader.args.validation_split={split} leaves no training data "
                            f"from {n_samples} samples; use a fraction below 1.0 or a count "
                            f"below {n_samples}")
        # a private generator: the split never touches (or depends on) global RNG state
        perm = torch.randperm(n_samples, generator=torch.Generator().manual_seed(seed))
        return perm[len_valid:], perm[:len_valid]

    def split_validation(self):
        """A DataLoader over the held-out samples, or None when there are none."""
        if self.valid_sampler is None:
            return None
        return self._ordered_loader(self.valid_sampler)

    def evaluation_loader(self):
        """This split's samples in order, each exactly once over all ranks (for test.py)."""
        sampler = ShardBatchSampler(self.train_indices, self.samples_per_batch,
                                    dist.get_rank(), dist.get_world_size())
        return self._ordered_loader(sampler)

    def _ordered_loader(self, batch_sampler):
        kwargs = {**self.init_kwargs, "persistent_workers": False}
        return DataLoader(batch_sampler=batch_sampler, generator=torch.Generator(), **kwargs)
