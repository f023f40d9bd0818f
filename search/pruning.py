"""The pruner's view of a trial (tune.py): the monitored value after each epoch, and the decision to stop."""
import optuna

from search.revived import RevivedElsewhere, unless_revived
from utils import distributed as dist

GO_ON, PRUNE, REVIVED = "go on", "prune", "revived"  # rank 0's word after an epoch, which every rank follows


class Pruned(optuna.TrialPruned):
    """The pruner ended the trial: its run's trackers end it as pruned (run_end), not as failed."""

    run_end = "PRUNED"


class PruneCheck:
    """Epoch listener: report the monitored value, and end a trial the pruner gives up on, or one another worker
    revived meanwhile (its retry continues the run from the checkpoint just saved).

    Rank 0 (the one with a `trial`) decides; every rank follows, after the epoch's checkpoint is saved.
    """

    def __init__(self, trial, metric, last_epoch):
        self.trial, self.metric, self.last_epoch = trial, metric, last_epoch

    def __call__(self, epoch, log):
        decision = dist.broadcast_object(self._decide(epoch, log) if self.trial is not None else None)
        if decision == REVIVED:
            raise RevivedElsewhere(epoch)
        if decision == PRUNE:
            raise Pruned(f"{self.metric} {log[self.metric]:.6g} after epoch {epoch}")

    def _decide(self, epoch, log):
        try:
            with unless_revived(self.trial):
                self.trial.report(float(log[self.metric]), epoch)
                self.trial.set_user_attr("epochs", epoch)
        except RevivedElsewhere:
            return REVIVED
        return PRUNE if epoch < self.last_epoch and self.trial.should_prune() else GO_ON
