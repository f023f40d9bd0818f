"""MetricsSink: every scalar of a run, handed to each of its peers: TensorBoard, MLflow, W&B.

The trainer's `self.writer` is the sink, so classic calls (`set_step`, `add_scalar`, `add_image`, ...,
`MetricTracker(..., writer=self.writer)`) reach every peer, and new code may call `log(scalars, step)`.
A peer has `log(scalars, step)`, `flush()`, `end_epoch(epoch, log, best)` and `close(error)`
(torchtitan's components/metrics.py has the same shape); one that also has `write(method, tag, data, step)`
(TensorBoard) takes SummaryWriter calls as given, images and histograms included. No peer is on
because another is; with none, the sink is a no-op.
"""
from logger.trackers.tracker_set import TrackerSet
from logger.visualization import ClassicWriterCalls


class MetricsSink(ClassicWriterCalls):
    def __init__(self, tensorboard=None, trackers=None):
        """`tensorboard`: a TensorboardWriter (a peer while enabled); `trackers`: a TrackerSet, whose trackers are
        peers from its `connect` on, until one fails or is closed."""
        super().__init__()
        self.tensorboard = tensorboard
        self.trackers = trackers if trackers is not None else TrackerSet([])

    @property
    def peers(self):
        tensorboard = [self.tensorboard] if self.tensorboard is not None and self.tensorboard.enabled else []
        return tensorboard + list(self.trackers.active)

    @property
    def enabled(self):
        """Whether any peer takes what is written: when none does, a caller may skip computing it."""
        return bool(self.peers)

    @property
    def hparams(self):
        """The TensorBoard peer's HParamsWriter: tune.py sets its `searched` keys."""
        return getattr(self.tensorboard, "hparams", None)

    @property
    def log_dir(self):
        return getattr(self.tensorboard, "log_dir", None)

    @log_dir.setter
    def log_dir(self, value):
        if self.tensorboard is not None:
            self.tensorboard.log_dir = str(value)

    def open(self):
        """Create TensorBoard's event file now, not inside the first epoch (importing it takes about half a
        second); the trackers' runs are opened by their TrackerSet before training."""
        if self.tensorboard is not None:
            self.tensorboard.open()

    def log(self, scalars, step):
        """{tag: number} at `step`, to every peer."""
        for peer in self.peers:
            peer.log(scalars, step)

    def write(self, method, tag, data, step, *args, **kwargs):
        """A SummaryWriter call: as given to a peer that takes those, its numbers to the others."""
        numbers = _numbers(method, tag, data)
        for peer in self.peers:
            if hasattr(peer, "write"):
                peer.write(method, tag, data, step, *args, **kwargs)
            elif numbers:
                peer.log(numbers, step)

    def end_epoch(self, epoch, log, best):
        """After an epoch is saved: TensorBoard's HParams summary, the trackers' artifacts."""
        for peer in self.peers:
            peer.end_epoch(epoch, log, best)

    def flush(self):
        for peer in self.peers:
            peer.flush()

    def close(self, error=None):
        """End every peer: `error` is the exception ending training, if any (trackers' runs then end KILLED or
        FAILED, not FINISHED)."""
        for peer in self.peers:
            peer.close(error)


def _numbers(method, tag, data):
    """The scalars in a SummaryWriter call, as {tag: value} (add_scalars: `<tag>/<key>`); {} for anything else."""
    if method == "add_scalar":
        return {tag: data}
    if method == "add_scalars":
        return {f"{tag}/{key}": value for key, value in data.items()}
    return {}
