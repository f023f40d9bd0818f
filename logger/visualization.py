"""TensorboardWriter: SummaryWriter calls tagged by mode; every scalar also reaches the run's trackers (MLflow, W&B)."""
import logging
from datetime import datetime

from logger.trackers.hparams import HParamsWriter
from logger.trackers.tracker_set import TrackerSet


class TensorboardWriter:
    """SummaryWriter, imported on the first write. Classic use: `set_step(step, mode)`, then every add_* call writes
    `<tag>/<mode>` at that step (histograms, embeddings: their own tag); with no TensorBoard or tracker, a no-op."""

    TB_METHODS = {"add_scalar", "add_scalars", "add_image", "add_images", "add_audio",
                  "add_text", "add_histogram", "add_pr_curve", "add_embedding"}
    UNTAGGED = {"add_histogram", "add_embedding"}

    def __init__(self, log_dir, logger=None, enabled=True, trackers=None, config=None):
        self.log_dir = str(log_dir)
        self.logger = logger or logging.getLogger("tensorboard")
        self.tensorboard = enabled  # TensorBoard's own event files
        self.trackers = trackers if trackers is not None else TrackerSet([])
        self.enabled = enabled or bool(self.trackers)
        self.hparams = HParamsWriter(config or {})
        self._writer = None
        self.step = 0
        self.mode = ""
        self.timer = datetime.now()

    @property
    def writer(self):
        if self._writer is None and self.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
                self._writer = SummaryWriter(self.log_dir)
            except ImportError:
                self.logger.warning("Warning: TensorBoard is not installed (pip install tensorboard); "
                                    "set trainer.tensorboard to false to silence this.")
                self.tensorboard = False
        return self._writer

    def open(self):
        """Import TensorBoard and create the SummaryWriter now, when enabled (it takes about half a second)."""
        return self.writer

    def set_step(self, step, mode="train"):
        self.mode = mode
        self.step = step
        if step != 0:
            elapsed = (datetime.now() - self.timer).total_seconds()
            if elapsed > 0:
                self.add_scalar("steps_per_sec", 1 / elapsed)
        self.timer = datetime.now()

    def write(self, method, tag, data, step, *args, **kwargs):
        """`SummaryWriter.<method>(tag, data, step)` as given: no suffix, no change of step or mode."""
        self._track(method, tag, data, step)
        if self.writer is not None:
            getattr(self.writer, method)(tag, data, step, *args, **kwargs)

    def __getattr__(self, name):
        if name not in self.TB_METHODS:
            raise AttributeError(f"type object '{type(self).__name__}' has no attribute '{name}'")

        def write(tag, data, *args, **kwargs):
            if name not in self.UNTAGGED and self.mode:
                tag = f"{tag}/{self.mode}"
            self.write(name, tag, data, self.step, *args, **kwargs)
        return write

    def _track(self, method, tag, data, step):
        if not self.trackers.active:
            return
        if method == "add_scalar":
            self.trackers.log_scalars({tag: data}, step)
        elif method == "add_scalars":
            self.trackers.log_scalars({f"{tag}/{k}": v for k, v in data.items()}, step)

    def end_epoch(self, epoch, log, best):
        """After an epoch is saved: HParams (settings beside final and best metrics), tracker artifacts."""
        if self.writer is not None:
            self.hparams.write(self.writer, epoch, log, best)
            self.writer.flush()
        self.trackers.end_epoch(epoch, log, best)

    def flush(self):
        if self._writer is not None:
            self._writer.flush()
        self.trackers.flush()

    def close(self, error=None):
        """Close the event file and end the tracker runs: `error` is the exception ending training, if any."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self.trackers.finish(error)
