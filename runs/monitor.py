"""Which epoch is best, and when to stop early (`trainer.monitor`, `trainer.early_stop`)."""
import logging
import math

from utils.metric_tracker import NOT_METRICS


class Monitor:
    """Tracks 'min <metric>' / 'max <metric>' over epochs; 'off' tracks nothing."""

    def __init__(self, spec="off", early_stop=0):
        self.mode, self.metric = ("off", None) if spec == "off" else spec.split()
        self.early_stop = early_stop if early_stop and early_stop > 0 else math.inf
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_epoch = None
        self.not_improved = 0

    @property
    def enabled(self):
        return self.mode != "off"

    def update(self, log, epoch):
        """Record one epoch's results; return True when it is the best so far."""
        if not self.enabled:
            return False
        if self.metric not in log:
            logging.getLogger("trainer").warning(
                f"Warning: metric '{self.metric}' is not found; model performance monitoring is "
                f"disabled. Monitor one of: {', '.join(k for k in log if k not in NOT_METRICS)}")
            self.mode = "off"
            return False
        value = log[self.metric]
        improved = value <= self.best if self.mode == "min" else value >= self.best
        if improved:
            self.best, self.best_epoch, self.not_improved = value, epoch, 0
        else:
            self.not_improved += 1
        return improved

    @property
    def should_stop(self):
        return self.enabled and self.not_improved > self.early_stop

    def state_dict(self):
        return {"mode": self.mode, "metric": self.metric, "best": float(self.best),
                "best_epoch": self.best_epoch, "not_improved": self.not_improved}

    def load_state_dict(self, state):
        if state.get("mode") != self.mode or state.get("metric") != self.metric:
            return  # the monitor changed (fine-tuning with a new config): start afresh
        self.best, self.best_epoch, self.not_improved = state["best"], state["best_epoch"], state["not_improved"]
