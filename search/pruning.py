"""The pruner's view of a trial (tune.py): the monitored value after each epoch, and the decision to stop."""
import optuna

from utils import distributed as dist


class Pruned(optuna.TrialPruned):
    """The pruner ended the trial: its run's trackers end it as pruned (run_end), not as failed."""

    run_end = "PRUNED"


class PruneCheck:
    """Epoch listener: report the monitored value, and end a trial the pruner gives up on.

    Rank 0 (the one with a `trial`) decides; every rank follows, after the epoch's checkpoint is saved.
    """

    def __init__(self, trial, metric, last_epoch):
        self.trial, self.metric, self.last_epoch = trial, metric, last_epoch

    def __call__(self, epoch, log):
        prune = False
        if self.trial is not None:
            self.trial.report(float(log[self.metric]), epoch)
            self.trial.set_user_attr("epochs", epoch)
            prune = epoch < self.last_epoch and self.trial.should_prune()
        if dist.broadcast_object(prune):
            raise Pruned(f"{self.metric} {log[self.metric]:.6g} after epoch {epoch}")
