"""trainer.checkpoint_interval: when to save model_latest.pth in the middle of an epoch."""
import time

from utils.config.rules import parse_duration


class CheckpointInterval:
    """trainer.checkpoint_interval: every N optimizer steps (an integer) or every so long ("30s",
    "10min", "2h"); None: never. The trainer asks `due()` after each optimizer step."""

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
