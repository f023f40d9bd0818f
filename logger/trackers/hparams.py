"""Runs compared in TensorBoard's HParams tab: each run's settings beside its final and best metrics.

Written into the run's own event files (not a sub-run, as SummaryWriter.add_hparams does), so
`tensorboard --logdir saved/log/` lists one row per run folder, sortable by any metric.
"""
import math
import numbers

from logger.trackers.run_info import flatten
from utils.redact import redact_all

NOT_METRICS = ("epoch", "epoch_time", "samples_per_sec")


def hparam_values(config):
    """The flattened config as the values HParams accepts: numbers, strings and booleans."""
    values = {}
    for key, value in flatten(redact_all(config)).items():
        values[key] = value if isinstance(value, (bool, numbers.Real)) and not _nan(value) else str(value)
    return values


def summary_metrics(log, best):
    """{'hparams/final_<metric>': last epoch's value, 'hparams/best_<monitored>': best value}."""
    metrics = {f"hparams/final_{k}": float(v) for k, v in log.items()
               if k not in NOT_METRICS and isinstance(v, numbers.Real) and not isinstance(v, bool)}
    metrics["hparams/final_epoch"] = float(log["epoch"])
    if best.get("metric") is not None:
        metrics[f"hparams/best_{best['metric']}"] = float(best["value"])
        metrics["hparams/best_epoch"] = float(best["epoch"])
    return metrics


class HParamsWriter:
    """Writes the HParams summaries once per process (on the first epoch: the metric names are
    known then), and the metric values at every epoch (the tab shows each tag's latest)."""

    def __init__(self, config):
        self.config = config
        self.declared = False

    def write(self, summary_writer, epoch, log, best):
        from torch.utils.tensorboard.summary import hparams
        metrics = summary_metrics(log, best)
        if not self.declared:
            experiment, start, end = hparams(hparam_values(self.config), {tag: 0.0 for tag in metrics})
            file_writer = summary_writer._get_file_writer()
            for summary in (experiment, start, end):
                file_writer.add_summary(summary)
            self.declared = True
        for tag, value in metrics.items():
            summary_writer.add_scalar(tag, value, epoch)


def _nan(value):
    return isinstance(value, float) and math.isnan(value)
