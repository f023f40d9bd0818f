"""TensorboardWriter: the classic writer, and the TensorBoard peer of the run's metrics sink (logger/metrics_sink.py).

It writes TensorBoard event files and nothing else: MLflow and W&B are the sink's other peers, not its guests."""
import contextlib
import errno
import logging
import threading
from datetime import datetime
from pathlib import Path

from utils.atomic import save_failed

FULL_DISK = (errno.ENOSPC, errno.EDQUOT)


class ClassicWriterCalls:
    """The classic writer's interface: `set_step(step, mode)`, then every add_* call writes `<tag>/<mode>` at
    that step (histograms, embeddings: their own tag). A subclass says where through `write`."""

    TB_METHODS = {"add_scalar", "add_scalars", "add_image", "add_images", "add_audio",
                  "add_text", "add_histogram", "add_pr_curve", "add_embedding"}
    UNTAGGED = {"add_histogram", "add_embedding"}

    def __init__(self):
        self.step = 0
        self.mode = ""
        self.timer = datetime.now()

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
        raise NotImplementedError

    def __getattr__(self, name):
        if name not in self.TB_METHODS:
            raise AttributeError(f"type object '{type(self).__name__}' has no attribute '{name}'")

        def write(tag, data, *args, **kwargs):
            if name not in self.UNTAGGED and self.mode:
                tag = f"{tag}/{self.mode}"
            self.write(name, tag, data, self.step, *args, **kwargs)
        return write


class TensorboardWriter(ClassicWriterCalls):
    """SummaryWriter, imported on the first write; when not `enabled` (or TensorBoard is not installed), a no-op.
    `hparams`: the HParamsWriter whose summary `end_epoch` writes (logger/hparams.py); None writes none."""

    def __init__(self, log_dir, logger=None, enabled=True, hparams=None, full_disk_hint=None):
        """`full_disk_hint()`: what to do when the event file cannot be written (the command that continues the
        run); such a write ends the run with SaveFailed (one line, exit 74), as any other file of the run does."""
        super().__init__()
        self.log_dir = str(log_dir)
        self.logger = logger or logging.getLogger("tensorboard")
        self.enabled = enabled
        self.hparams = hparams
        self.full_disk_hint = full_disk_hint or (lambda: "free space, then resume the run")
        self._writer = None

    @property
    def writer(self):
        if self._writer is None and self.enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter
                self._writer = SummaryWriter(self.log_dir)
                threading.excepthook = _quiet_full_disk_in_writer_thread  # its default is the `previous` above
            except ImportError:
                self.logger.warning("Warning: TensorBoard is not installed (pip install tensorboard); "
                                    "set trainer.tensorboard to false to silence this.")
                self.enabled = False
        return self._writer

    def open(self):
        """Import TensorBoard and create the SummaryWriter now, when enabled (it takes about half a second)."""
        return self.writer

    def write(self, method, tag, data, step, *args, **kwargs):
        if self.writer is not None:
            with self._full_disk_is_save_failed():
                getattr(self.writer, method)(tag, data, step, *args, **kwargs)

    @contextlib.contextmanager
    def _full_disk_is_save_failed(self):
        """TensorBoard writes in a thread of its own and raises its OSError at a later call, here."""
        try:
            yield
        except OSError as err:
            if err.errno not in FULL_DISK:
                raise
            self._writer, self.enabled = None, False  # closing it would raise the same error again
            raise save_failed(err, [Path(self.log_dir) / "events"], hint=self.full_disk_hint(),
                              shown=["TensorBoard's event file"]) from None

    # ---- as a peer of the metrics sink: log / flush / end_epoch / close ----------------------------
    def log(self, scalars, step):
        for tag, value in scalars.items():
            self.write("add_scalar", tag, value, step)

    def end_epoch(self, epoch, log, best):
        """After an epoch is saved: the HParams summary (settings beside final and best metrics)."""
        if self.writer is not None:
            with self._full_disk_is_save_failed():
                if self.hparams is not None:
                    self.hparams.write(self.writer, epoch, log, best)
                self.writer.flush()

    def flush(self):
        if self._writer is not None:
            with self._full_disk_is_save_failed():
                self._writer.flush()

    def close(self, error=None):
        """Close the event file (`error`, the exception ending training, changes nothing for TensorBoard)."""
        if self._writer is not None:
            with self._full_disk_is_save_failed():
                self._writer.close()
            self._writer = None


def _quiet_full_disk_in_writer_thread(args, previous=threading.excepthook):
    """TensorBoard's writer thread re-raises its OSError to die, and Python prints that traceback; the main thread
    raises the same error at its next call, as one line (SaveFailed). Any other thread's error is printed."""
    files, frame = [], args.exc_traceback
    while frame is not None:
        files.append(frame.tb_frame.f_code.co_filename)
        frame = frame.tb_next
    if isinstance(args.exc_value, OSError) and args.exc_value.errno in FULL_DISK \
            and any(name.endswith("event_file_writer.py") for name in files):
        return
    previous(args)
