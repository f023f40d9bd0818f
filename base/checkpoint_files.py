"""The checkpoint files of a run folder: which to write, written together or not at all."""
import errno
import io
import re
import shutil
import time

import torch

from utils.atomic import atomic_write_all
from utils.errors import UserError

LATEST, BEST = "model_latest.pth", "model_best.pth"
EXIT_SAVE_FAILED = 74  # sysexits' EX_IOERR: the run's state could not be written (README: exit codes)


class SaveFailed(UserError):
    exit_code = EXIT_SAVE_FAILED


class CheckpointFiles:
    """model_latest.pth every epoch, checkpoint-epoch<N>.pth every save_period, model_best.pth on
    improvement. Files of one save are replaced together, so they never contradict each other."""

    def __init__(self, folder, save_period=1, keep_last=None, logger=None):
        self.folder, self.save_period, self.keep_last, self.logger = folder, save_period, keep_last, logger

    def save_epoch(self, state, epoch, improved, last):
        names = [LATEST]
        periodic = epoch % self.save_period == 0 or last
        if periodic:
            names.append(f"checkpoint-epoch{epoch}.pth")
            self.logger.info(f"Saving checkpoint: {self.folder / names[-1]} ...")
        if improved:
            names.append(BEST)
        self.write(state, names)
        if improved:
            self.logger.info(f"Saving current best: {BEST} ...")
        if periodic:
            self._prune()

    def write(self, state, names):
        """Serialise once; write every file or, on a full disk, none (SaveFailed, one line)."""
        buffer = io.BytesIO()
        torch.save(state, buffer)
        data = buffer.getbuffer()
        try:
            atomic_write_all([(self.folder / name, lambda handle: handle.write(data)) for name in names])
        except OSError as err:
            raise self._failure(err, names, len(data)) from None

    def _failure(self, err, names, size):
        need, free = size * len(names), shutil.disk_usage(self.folder).free
        why = "no space left on the device" if err.errno in (errno.ENOSPC, errno.EDQUOT) else err.strerror
        return SaveFailed(f"could not save {', '.join(names)} in {self.folder}: {why} (it needs "
                          f"{need / 1e6:.2f} MB, {free / 1e6:.2f} MB are free); the checkpoints there are "
                          f"unchanged: free space, then resume with python train.py -r {self.folder / LATEST}")

    def _prune(self):
        if not self.keep_last:
            return
        found = sorted(self.folder.glob("checkpoint-epoch*.pth"),
                       key=lambda p: int(p.stem.removeprefix("checkpoint-epoch")))
        for old in found[:-self.keep_last]:
            old.unlink(missing_ok=True)


class CheckpointInterval:
    """trainer.checkpoint_interval: every N optimizer steps (an integer) or every so long ("30s",
    "10min", "2h"); None: never. The trainer asks `due()` after each optimizer step."""

    UNITS = {"s": 1, "min": 60, "h": 3600}

    def __init__(self, interval=None):
        self.steps = interval if isinstance(interval, int) else None
        self.seconds = parse_duration(interval) if isinstance(interval, str) else None
        self.reset()

    def reset(self):
        self.steps_done, self.started = 0, time.monotonic()

    def step(self):
        self.steps_done += 1

    def due(self, clock):
        """A step count is due the same on every rank; a duration (`clock`) by this process's clock."""
        if clock and self.seconds is not None:
            return time.monotonic() - self.started >= self.seconds
        return self.steps is not None and self.steps_done >= self.steps


def parse_duration(text):
    """"30s", "10min", "1.5h" -> seconds; None for anything else."""
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(s|min|h)\s*", str(text))
    return float(found.group(1)) * CheckpointInterval.UNITS[found.group(2)] if found else None
