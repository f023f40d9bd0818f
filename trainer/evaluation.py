"""The one evaluation loop: the Trainer's validation after each epoch, and test.py."""
from contextlib import nullcontext

import torch

from base.batch_transform import defer_batch_transform
from trainer.progress import EpochProgress
from utils import distributed as dist
from utils.metric_tracker import MetricTracker, metric_name, update_metrics
from utils.model_input import forward


def to_device(data, target, device, transform=None):
    """A batch on `device`, its inputs through the loader's batch transform (taken with defer_batch_transform)."""
    data = data.to(device, non_blocking=True)
    return (transform(data) if transform else data), target.to(device, non_blocking=True)


def evaluate(model, loader, criterion, metric_fns, device, label="Valid", show_bar=False, log_step=1,
             autocast=nullcontext, same_steps=False):
    """Loss and metrics of `model` (already in eval mode) over every sample of `loader`, each seen
    once over all ranks: a MetricTracker holding the exact averages (and counts) of the whole split.
    `same_steps`: every rank runs as many forwards as the rank with the most batches (an FSDP model's forward
    all-gathers its weights: a rank that stopped early would leave the others waiting)."""
    metrics = MetricTracker("loss", *(metric_name(m) for m in metric_fns))
    transform = defer_batch_transform(loader)
    progress = EpochProgress(len(loader), label, show_bar)
    steps = max(dist.all_gather_object(len(loader))) if same_steps else len(loader)
    data = None
    with torch.no_grad():
        for batch_idx, (data, target) in enumerate(loader):
            data, target = to_device(data, target, device, transform)
            with autocast():
                output = forward(model, data, batch_idx == 0, target)  # a misfit model or labels: one line
                loss = criterion(output, target)
            update_metrics(metrics, metric_fns, output, target, loss)
            progress.update(target.size(0))
            if show_bar and batch_idx % log_step == 0:  # reading the loss syncs: log steps only
                progress.show(loss=f"{metrics.avg('loss'):.4f}")
        for _ in range(steps - len(loader)):  # the shards differ by a sample: repeat a batch, count nothing
            with autocast():
                model(data)
    progress.close()
    metrics.all_reduce(dist.all_reduce_sum)
    return metrics
