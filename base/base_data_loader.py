"""BaseDataLoader: a DataLoader built the classic way, with a reproducible train/validation split; its order is
a pure function of (seed, pass), so a resumed run sees exactly the samples the uninterrupted run would."""
import logging
import os

import torch
from torch.utils.data import DistributedSampler, Sampler
from torch.utils.data.dataloader import default_collate

from base.batch_transform import BatchTransformLoader
from utils import distributed as dist
from utils.errors import UserError
from utils.seed import seed_worker


class EpochSampler(Sampler):
    """Training sample indices of one pass: shuffled by (seed, pass), sharded per rank. Each iteration is the
    next pass unless `set_epoch(n)` chose it, so a loop without set_epoch (a classic one) gets a new order."""

    def __init__(self, indices, shuffle, seed, rank=0, world_size=1):
        self.indices = torch.as_tensor(indices, dtype=torch.long)
        # DistributedSampler pads every rank to the same length: DDP ranks run the same number of steps
        self.order = DistributedSampler(range(len(self.indices)), num_replicas=world_size, rank=rank,
                                        shuffle=shuffle, seed=seed)
        self.epoch, self.upcoming = 0, 1  # the pass last served; the next one's number
        self.skip = 0  # samples to leave out of the next pass (a mid-epoch resume)

    def set_epoch(self, epoch):
        self.upcoming = epoch

    def __iter__(self):
        self.epoch, self.upcoming = self.upcoming, self.upcoming + 1
        self.order.set_epoch(self.epoch)
        skip, self.skip = self.skip, 0
        return iter(self.indices[list(self.order)[skip:]].tolist())

    def __len__(self):
        # a pending skip shortens the next pass, and len(loader) with it
        return max(0, len(self.order) - self.skip)


class ShardSampler(Sampler):
    """Validation / test indices in a fixed order, rank r taking every world_size-th sample. No padding: every
    sample is seen exactly once over all ranks, so summed metrics give exact averages."""

    def __init__(self, indices, rank=0, world_size=1):
        self.indices = torch.as_tensor(indices, dtype=torch.long)[rank::world_size]

    def __iter__(self):
        return iter(self.indices.tolist())

    def __len__(self):
        return len(self.indices)


class BaseDataLoader(BatchTransformLoader):
    """Base class for all data loaders: training batches plus `split_validation()`, which reads `valid_dataset`
    when given (the same samples as `dataset`, prepared for evaluation: no random augmentation)."""

    def __init__(self, dataset, batch_size, shuffle, validation_split, num_workers=None,
                 collate_fn=default_collate, seed=0, drop_last=False, batch_transform=None, valid_dataset=None):
        if valid_dataset is not None and len(valid_dataset) != len(dataset):  # the split's indices index both
            raise UserError(f"valid_dataset holds {len(valid_dataset)} samples, dataset {len(dataset)}; "
                            "give both the same samples, prepared differently")
        self.valid_dataset = valid_dataset
        self.validation_split = validation_split
        self.shuffle = shuffle
        self.seed = 0 if seed is None else int(seed)
        train_idx, valid_idx = self._split_indices(len(dataset), validation_split, self.seed)
        self.n_samples = len(train_idx)
        self.train_indices = train_idx
        rank, world = dist.get_rank(), dist.get_world_size()
        num_workers = default_num_workers() if num_workers is None else num_workers
        self.valid_sampler = ShardSampler(valid_idx, rank, world) if len(valid_idx) else None
        self.generator = torch.Generator()  # worker seeds, kept apart from the model's RNG
        self.init_kwargs = {
            "dataset": dataset,
            "batch_size": batch_size,
            "shuffle": False,  # the order comes from the sampler, as in the classic with a split
            "collate_fn": collate_fn,
            "num_workers": num_workers,
            "pin_memory": torch.cuda.is_available(),
            "worker_init_fn": seed_worker if num_workers > 0 else None,
            # worker seeds come from here, not from the global RNG that dropout draws from;
            # re-seeded at every training pass, so sharing it with validation changes nothing
            "generator": self.generator,
        }
        super().__init__(sampler=EpochSampler(train_idx, shuffle, self.seed, rank, world), drop_last=drop_last,
                         persistent_workers=num_workers > 0, batch_transform=batch_transform, **self.init_kwargs)

    def set_epoch(self, epoch):
        """Make the next pass pass number `epoch` (its shuffle and worker seeds)."""
        self.sampler.set_epoch(epoch)

    def skip_samples(self, count):
        """Leave out the first `count` samples of the next pass (mid-epoch resume)."""
        self.sampler.skip = count

    def __iter__(self):
        self.generator.manual_seed(self.seed * 100003 + self.sampler.upcoming)  # this pass's worker seeds
        return super().__iter__()

    @staticmethod
    def _split_indices(n_samples, split, seed):
        if split == 0:
            return torch.arange(n_samples), torch.arange(0)
        len_valid = split if isinstance(split, int) and not isinstance(split, bool) else int(n_samples * split)
        if not 0 <= len_valid < n_samples or not (isinstance(split, int) or 0 <= split < 1):
            raise UserError(f"data_loader.args.validation_split={split} leaves no training data from {n_samples} "
                            f"samples; use a fraction below 1.0 or a count below {n_samples}")
        # a private generator: the split never touches (or depends on) global RNG state
        perm = torch.randperm(n_samples, generator=torch.Generator().manual_seed(seed))
        return perm[len_valid:], perm[:len_valid]

    def split_validation(self):
        """A DataLoader over the held-out samples, or None when there are none."""
        if self.valid_sampler is None:
            return None
        dataset = self.init_kwargs["dataset"] if self.valid_dataset is None else self.valid_dataset
        kwargs = {**self.init_kwargs, "dataset": dataset}
        return BatchTransformLoader(sampler=self.valid_sampler, batch_transform=self.batch_transform, **kwargs)

    def evaluation_loader(self):
        """This split's samples in order, each exactly once over all ranks (for test.py)."""
        sampler = ShardSampler(self.train_indices, dist.get_rank(), dist.get_world_size())
        return BatchTransformLoader(sampler=sampler, batch_transform=self.batch_transform, **self.init_kwargs)


def default_num_workers():
    """Loader workers for this process when the config does not say: its share of the cores, less one
    for the training step. Below 4 cores, none: workers there only compete with the step (docs/customizing.md)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    share = cores // int(os.environ.get("LOCAL_WORLD_SIZE", 1))  # torchrun: the processes on this node
    workers = 0 if share < 4 else min(share - 1, 8)
    logging.getLogger("data_loader").info(f"data_loader.args.num_workers not set: using {workers} "
                                          f"({share} cores for this process)")
    return workers
