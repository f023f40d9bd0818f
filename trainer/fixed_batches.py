"""The first N batches of a loader, read once and served again every pass: trainer.overfit_batches trains and
validates on them (a model that cannot drive their loss near zero has a bug in the model, the loss or the data),
and --dry_run validates on one (docs/debugging.md)."""
import itertools


class FixedBatches:
    """The first `count` batches of `loader`'s training split in a fixed order, read once and served again every
    pass: the training loader, and the validation loader too. It can skip samples, so a mid-epoch resume works."""

    drop_last = False

    def __init__(self, loader, count):
        self.source = loader
        self.count = count
        self.batch_size = loader.batch_size
        self._batches = None  # read on the first pass: a constructor touches no data
        self._skip = 0  # batches to leave out of the next pass (a mid-epoch resume)

    def __iter__(self):
        if self._batches is None:
            self._batches = list(itertools.islice(_unshuffled(self.source), self.count))
        skip, self._skip = self._skip, 0
        return iter(self._batches[skip:])

    def __len__(self):
        return len(self._batches) if self._batches is not None else min(self.count, len(self.source))

    @property
    def sampler(self):
        """Stands for the pass's samples: BatchStream counts a pass's length from len(loader.sampler)."""
        return range(len(self) * (self.batch_size or 1))

    def skip_samples(self, count):
        self._skip = count // (self.batch_size or 1)


def _unshuffled(loader):
    """The training split's batches in a fixed order: a BaseDataLoader's evaluation order (this rank's share
    under DDP, in the loader's batch transform), any other loader as it comes (read once, so fixed as well)."""
    ordered = getattr(loader, "evaluation_loader", None)
    return iter(ordered() if ordered is not None else loader)
