"""Batches from a loader, pass after pass, with a position a checkpoint can record."""
from runs.files import EPOCH_PATTERN
from utils.errors import UserError


class BatchStream:
    """Serves training batches, crossing passes, and knows where it is: (data pass, samples into it). Counted in
    samples, so a run resumed with another batch size continues at the same sample."""

    def __init__(self, loader):
        self.loader = loader
        self.data_pass = 1
        self.position = 0  # samples (of this rank) already served from the current pass
        self._iterator = None

    def take(self, count=None):
        """Yield the next `count` batches, starting new passes as needed; None: the rest of this pass."""
        taken = 0
        while count is None or taken < count:
            if self._iterator is None:
                self._start_pass()
            try:
                batch = next(self._iterator)
            except StopIteration:
                empty = self.position == 0
                self.data_pass, self.position, self._iterator = self.data_pass + 1, 0, None
                if count is None:
                    return
                if empty:
                    raise UserError("the training data loader yields no batches; check the data set "
                                    "and data_loader.args") from None
                continue
            # only the pass's last batch may be short, and a position past the end means "pass done"
            self.position += self.loader.batch_size or 1
            taken += 1
            yield batch

    def batches_left_in_pass(self):
        """How many batches `take()` yields before this pass ends (asked between passes or at a resume)."""
        if not self.position:
            return len(self.loader)
        left = max(0, len(self.loader.sampler) - self.position)
        size = self.loader.batch_size or 1
        return left // size if self.loader.drop_last else -(-left // size)

    def _start_pass(self):
        if hasattr(self.loader, "set_epoch"):
            self.loader.set_epoch(self.data_pass)
        if self.position:
            self.loader.skip_samples(self.position)
        self._iterator = iter(self.loader)

    def state_dict(self):
        return {"data_pass": self.data_pass, "samples": self.position}

    def load_state_dict(self, state):
        samples = state["samples"]
        if samples and not hasattr(self.loader, "skip_samples"):
            raise UserError(f"the checkpoint stopped {samples} samples into a pass, and resuming there needs "
                            f"a data loader that can skip them ({type(self.loader).__name__} cannot): subclass "
                            f"BaseDataLoader, or resume from a {EPOCH_PATTERN}")
        self.data_pass, self.position = state["data_pass"], samples
        self._iterator = None
