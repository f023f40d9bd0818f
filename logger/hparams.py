"""Runs compared in TensorBoard's HParams tab: each run's settings beside its final and best metrics.

Written into the run's own event files (not a sub-run, as SummaryWriter.add_hparams does), so
`tensorboard --logdir saved/log/` lists one row per run folder, sortable by any metric.

Which settings are columns: a plain run records every setting and declares no column list, so
TensorBoard computes one from all the runs it loads and puts the settings that differ between
them first (the tab shows the first five). A search trial records the searched keys alone and
declares them as the columns, marked as differing: constants are left out.
"""
import math
import numbers

from utils.config.dotted import flatten
from utils.metric_tracker import NOT_METRICS
from utils.redact import redact_all


def hparam_values(config, keys=None):
    """The flattened config (only `keys`, in their order, when given) as the values HParams accepts."""
    flat = flatten(redact_all(config))
    if keys is not None:
        flat = {key: flat[key] for key in keys if key in flat}
    return {key: value if isinstance(value, (bool, numbers.Real)) and not _nan(value) else str(value)
            for key, value in flat.items()}


def summary_metrics(log, best):
    """{'hparams/final_<metric>': last epoch's value, 'hparams/best_<monitored>': best value}."""
    metrics = {f"hparams/final_{k}": float(v) for k, v in log.items()
               if k not in NOT_METRICS and isinstance(v, numbers.Real) and not isinstance(v, bool)}
    metrics["hparams/final_epoch"] = float(log["epoch"])
    if best.get("metric") is not None:
        metrics[f"hparams/best_{best['metric']}"] = float(best["value"])
        metrics["hparams/best_epoch"] = float(best["epoch"])
    return metrics


def hparams_summaries(values, metric_tags, declare_columns):
    """The session's summaries: its settings, and (`declare_columns`) the experiment: these settings as
    the tab's columns, marked as differing between runs so that they come first, and `metric_tags`."""
    from torch.utils.tensorboard.summary import hparams

    experiment, start, _ = hparams(values, {tag: 0.0 for tag in metric_tags})
    return [_marked_differing(experiment), start] if declare_columns else [start]


def _marked_differing(experiment):
    from tensorboard.plugins.hparams import plugin_data_pb2

    plugin = experiment.value[0].metadata.plugin_data
    content = plugin_data_pb2.HParamsPluginData.FromString(plugin.content)
    for column in content.experiment.hparam_infos:
        column.differs = True  # TensorBoard shows differing columns first, and checks the first five
    plugin.content = content.SerializeToString()
    return experiment


class HParamsWriter:
    """Writes the HParams summaries once per process (on the first epoch: the metric names are
    known then), and the metric values at every epoch (the tab shows each tag's latest).
    `searched`: the keys a search varies (tune.py sets it); None for a plain run."""

    def __init__(self, config, searched=None):
        self.config = config
        self.searched = searched
        self.declared = False

    def write(self, summary_writer, epoch, log, best):
        metrics = summary_metrics(log, best)
        if not self.declared:
            values = hparam_values(self.config, self.searched)
            file_writer = summary_writer._get_file_writer()
            for summary in hparams_summaries(values, metrics, declare_columns=self.searched is not None):
                file_writer.add_summary(summary)
            self.declared = True
        for tag, value in metrics.items():
            summary_writer.add_scalar(tag, value, epoch)


def _nan(value):
    return isinstance(value, float) and math.isnan(value)
