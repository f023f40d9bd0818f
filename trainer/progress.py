"""Per-epoch progress: a tqdm bar on a terminal, plain log lines elsewhere."""
import os
import sys

from utils import distributed as dist


def use_progress_bar(verbosity, stream=None):
    """A bar only for a person watching: a terminal, verbosity >= 1, and rank 0."""
    stream = stream or sys.stderr  # looked up now: tests and tools replace sys.stderr
    return verbosity >= 1 and dist.is_main_process() and stream.isatty() and _has_width(stream)


def _has_width(stream):
    """False for a pseudo-terminal nobody sized (docker -t, `script` in CI): it reports 0
    columns and tqdm would draw nothing at all, so the plain log lines are shown instead."""
    try:
        return os.get_terminal_size(stream.fileno()).columns > 0
    except (OSError, ValueError, AttributeError):
        return True  # width unknown (not a real file): trust isatty


class EpochProgress:
    """Counts samples of one epoch, shown as a tqdm bar when enabled. `update` runs every batch and costs next
    to nothing; `show` takes values read on logging steps only."""

    def __init__(self, total_batches, desc, enabled, initial=0):
        self.bar = None
        if enabled:
            from tqdm import tqdm  # only when a bar is shown

            self.bar = tqdm(total=total_batches, initial=initial, desc=desc, unit="batch",
                            dynamic_ncols=True, leave=False, file=sys.stderr)
        self.samples = 0

    def update(self, batch_size):
        self.samples += batch_size
        if self.bar is not None:
            self.bar.update(1)

    def show(self, **values):
        if self.bar is not None:
            rate = self.bar.format_dict.get("rate")
            if rate:
                values["samples/s"] = f"{rate * self.samples / max(self.bar.n - self.bar.initial, 1):.0f}"
            self.bar.set_postfix(values, refresh=False)

    def close(self):
        if self.bar is not None:
            self.bar.close()
