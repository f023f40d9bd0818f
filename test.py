"""Evaluate a checkpoint on the test split: python test.py -r saved/models/.../model_best.pth"""
import argparse
import sys
from pathlib import Path

import torch

import data_loader.data_loaders as module_data
import model.loss as module_loss
import model.metric as module_metric
import model.model as module_arch
from base.batch_transform import device_transform
from parse_config import ConfigParser
from trainer.progress import EpochProgress, use_progress_bar
from utils import distributed as dist
from utils import prepare_device
from utils.checkpoint import load_weights
from utils.config_check import check_sections
from utils.errors import UserError, run_cli
from utils.lookup import find_by_name
from utils.metric_tracker import MetricTracker, metric_name, update_metrics
from utils.model_input import forward
from utils.util import write_json

SECTIONS = ("arch", "data_loader", "loss", "metrics")  # what main() builds


def main(config, device=None):
    logger = config.get_logger("test")
    check_sections(config.config, SECTIONS)
    if config.checkpoint is None:
        raise UserError("test.py needs a checkpoint: python test.py -r saved/models/<name>/<run>/model_best.pth")

    # the test split, built from the checkpoint's own loader config
    loader_args = config["data_loader"].setdefault("args", {})
    loader_args.update(shuffle=False, validation_split=0.0, training=False)
    data_loader = config.init_obj("data_loader", module_data).evaluation_loader()

    # build model architecture and load the trained weights
    model = config.init_obj("arch", module_arch)
    logger.info(model)
    load_weights(model, config.checkpoint["state_dict"], config.resume)

    device_ids = []
    if device is None:
        device, device_ids = prepare_device(config["n_gpu"])
    model = model.to(device)
    if len(device_ids) > 1:
        model = torch.nn.DataParallel(model, device_ids=device_ids)
    model.eval()

    loss_fn = config.init_named("loss", module_loss)
    metric_fns = [find_by_name(module_metric, met, "metric") for met in config["metrics"]]
    results = evaluate(model, data_loader, loss_fn, metric_fns, device,
                       show_bar=use_progress_bar(config.trainer_options.verbosity))
    if dist.is_main_process():
        report(results, config.resume, logger)


def evaluate(model, data_loader, loss_fn, metric_fns, device, show_bar=False):
    """Average loss and metrics over every test sample (all ranks together)."""
    tracker = MetricTracker("loss", *[metric_name(m) for m in metric_fns])
    transform = device_transform(data_loader)
    progress = EpochProgress(len(data_loader), "Test", show_bar)
    with torch.no_grad():
        for batch_idx, (data, target) in enumerate(data_loader):
            data, target = data.to(device, non_blocking=True), target.to(device, non_blocking=True)
            output = forward(model, transform(data) if transform else data, first_batch=batch_idx == 0)
            update_metrics(tracker, metric_fns, output, target, loss_fn(output, target))
            progress.update(target.size(0))
    progress.close()
    tracker.all_reduce(dist.all_reduce_sum)
    return {"metrics": tracker.result(), "n_samples": tracker._counts["loss"]}


def report(results, checkpoint_path, logger):
    """Print the results as a table and save them beside the checkpoint."""
    checkpoint_path = Path(checkpoint_path)
    width = max(len(k) for k in results["metrics"])
    for key, value in results["metrics"].items():
        logger.info(f"    {key:{width}s}: {value:.6f}")
    logger.info(f"    {'samples':{width}s}: {results['n_samples']}")
    out = checkpoint_path.with_name(f"{checkpoint_path.stem}.test.json")
    write_json({**results, "checkpoint": str(checkpoint_path)}, out)  # atomic, like every file we write
    logger.info(f"Results saved to {out}")
    return out


def parse_args(argv=None):
    args = argparse.ArgumentParser(description="PyTorch Template")
    args.add_argument("-c", "--config", default=None, type=str,
                      help="config file path (default: the checkpoint's config)")
    args.add_argument("-r", "--resume", default=None, type=str,
                      help="path to the checkpoint to evaluate")
    args.add_argument("-d", "--device", default=None, type=str,
                      help="indices of GPUs to enable (default: all)")
    return ConfigParser.from_args(args, argv=argv)


def cli():
    device = dist.init_distributed()
    try:
        run_cli(lambda: main(parse_args(), device))
    except KeyboardInterrupt:
        print("Aborted.", file=sys.stderr)
        sys.exit(130)
    finally:
        dist.cleanup()


if __name__ == "__main__":
    cli()

