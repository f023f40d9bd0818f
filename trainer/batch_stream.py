"""Batches from a loader, pass after pass, with a position a checkpoint can record."""


class BatchStream:
    """Serves training batches and knows where it is: (data pass, batches into it).

    Epoch-based training runs one pass per epoch; iteration-based training
    (`len_epoch`) takes a fixed number of batches and crosses passes. Each pass
    is shuffled by `loader.set_epoch(pass)`, so restoring the position gives
    the same batches an uninterrupted run would have had.
    """

    def __init__(self, loader):
        self.loader = loader
        self.data_pass = 1
        self.position = 0  # batches already served from the current pass
        self._iterator = None

    def take(self, count):
        """Yield the next `count` batches, starting new passes as needed."""
        for _ in range(count):
            if self._iterator is None:
                self._start_pass()
            try:
                batch = next(self._iterator)
            except StopIteration:
                self.next_pass()
                self._start_pass()
                batch = next(self._iterator)
            self.position += 1
            yield batch

    def next_pass(self):
        self.data_pass += 1
        self.position = 0
        self._iterator = None

    def _start_pass(self):
        if hasattr(self.loader, "set_epoch"):
            self.loader.set_epoch(self.data_pass)
        if self.position and hasattr(self.loader.batch_sampler, "skip_batches"):
            self.loader.batch_sampler.skip_batches(self.position)
        self._iterator = iter(self.loader)

    def state_dict(self):
        return {"data_pass": self.data_pass, "position": self.position}

    def load_state_dict(self, state):
        self.data_pass, self.position = state["data_pass"], state["position"]
        self._iterator = None
