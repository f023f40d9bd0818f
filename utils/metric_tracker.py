"""MetricTracker: batch-size-weighted running averages, and the per-batch update of the Trainer and test.py."""
import torch

from utils import distributed as dist

# in each epoch's log, but no measure of the model: not offered as a monitor, not an HParams metric
NOT_METRICS = ("epoch", "lr", "epoch_time", "samples_per_sec", "val_on_ema")  # val_on_ema: 1 or 0, see trainer/ema.py


def metric_name(fn):
    return getattr(fn, "__name__", None) or fn.func.__name__  # plain function or init_ftn partial


def update_metrics(tracker, metric_fns, output, target, loss):
    """Add one batch's loss and metrics to `tracker`, weighted by its size (no device sync)."""
    batch_size = target.size(0)
    tracker.update("loss", loss, batch_size)
    for met in metric_fns:
        tracker.update(metric_name(met), met(output, target), batch_size)


class MetricTracker:
    """Running, batch-size-weighted averages of named values; tensors are summed on their device, so updating
    costs no host-device synchronisation."""

    def __init__(self, *keys, writer=None):
        # classic: with a writer, every update is also a TensorBoard scalar at the writer's step.
        # That reads the value (a device sync), so the template's own Trainer passes none.
        self.writer = writer
        self.keys = list(keys)
        self.reset()

    def reset(self):
        self._totals = dict.fromkeys(self.keys, 0.0)
        self._counts = dict.fromkeys(self.keys, 0)

    def update(self, key, value, n=1):
        if isinstance(value, torch.Tensor):
            value = value.detach()
        if self.writer is not None:
            self.writer.add_scalar(key, value)
        self._totals[key] = self._totals[key] + value * n
        self._counts[key] += n

    def avg(self, key):
        count = self._counts[key]
        return float(self._totals[key]) / count if count else float("nan")

    def count(self, key):
        """How many samples `key`'s average is over."""
        return self._counts[key]

    def result(self):
        return {key: self.avg(key) for key in self.keys}

    def all_reduce(self, reduce_sum):
        """Sum totals and counts over processes with `reduce_sum(tensor) -> tensor`."""
        packed = reduce_sum(torch.tensor([[float(self._totals[k]), self._counts[k]] for k in self.keys],
                                         dtype=torch.float64))
        self._totals = {k: packed[i, 0].item() for i, k in enumerate(self.keys)}
        self._counts = {k: int(packed[i, 1].item()) for i, k in enumerate(self.keys)}

    def state_dict(self):
        return {"totals": {k: float(v) for k, v in self._totals.items()}, "counts": dict(self._counts)}

    def load_state_dict(self, state):
        self._totals = dict(state["totals"])
        self._counts = dict(state["counts"])

    @property
    def _data(self):
        import pandas as pd  # only when the table is asked for: pandas is slow to import

        return pd.DataFrame({"total": [float(self._totals[k]) for k in self.keys],
                             "counts": [self._counts[k] for k in self.keys],
                             "average": [self.avg(k) for k in self.keys]}, index=self.keys)


class RankShares:
    """A tracker's state as a checkpoint part: every rank's partial sums (saving is a collective); loaded, this
    rank's own share. Saved with another number of processes, rank 0 takes the sum of all and the others
    nothing: the all-reduce then gives the right totals."""

    def __init__(self, tracker):
        self.tracker = tracker

    def state_dict(self):
        return dist.all_gather_object(self.tracker.state_dict())

    def load_state_dict(self, states):
        if len(states) == dist.get_world_size():
            return self.tracker.load_state_dict(states[dist.get_rank()])
        summed = states if dist.get_rank() == 0 else []
        self.tracker.load_state_dict({part: {k: sum(s[part][k] for s in summed) for k in states[0][part]}
                                      for part in ("totals", "counts")})
