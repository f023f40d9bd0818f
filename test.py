"""Evaluate a checkpoint on the test split: python test.py -r saved/models/.../model_best.pth"""
import utils.before_torch  # noqa: F401  (first: OpenMP reads its wait policy when torch loads it)

# isort: split
import argparse

import data_loader.data_loaders as module_data
import model.loss as module_loss
import model.metric as module_metric
import model.model as module_arch
from parse_config import ConfigParser
from trainer.evaluation import evaluate
from trainer.progress import use_progress_bar
from utils import distributed as dist
from utils.checkpoint import load_weights
from utils.config_check import check_sections
from utils.cpu_threads import use_cpu_threads
from utils.errors import UserError, run_entry
from utils.lookup import find_by_name
from utils.util import place_model, write_json


def main(config, device=None):
    logger = config.get_logger("test")
    check_sections(config.config, ("arch", "data_loader", "loss", "metrics"))
    if config.checkpoint is None:
        raise UserError("test.py needs a checkpoint: python test.py -r saved/models/<name>/<run>/model_best.pth")

    # the test split, built from the checkpoint's own loader config
    config["data_loader"].setdefault("args", {}).update(shuffle=False, validation_split=0.0, training=False)
    data_loader = config.init_obj("data_loader", module_data).evaluation_loader()
    logger.info(use_cpu_threads(config.trainer_options.cpu_threads, config.trainer_options.deterministic))

    model = config.init_obj("arch", module_arch)
    logger.info(model)
    load_weights(model, config.checkpoint["state_dict"], config.resume)
    model, device = place_model(model, config["n_gpu"], device)
    model.eval()

    loss_fn = config.init_named("loss", module_loss)
    metric_fns = [find_by_name(module_metric, met, "metric") for met in config["metrics"]]
    metrics = evaluate(model, data_loader, loss_fn, metric_fns, device, "Test",
                       use_progress_bar(config.trainer_options.verbosity))
    if dist.is_main_process():
        report({"metrics": metrics.result(), "n_samples": metrics.count("loss")}, config.resume, logger)


def report(results, checkpoint_path, logger):
    """Print the results as a table and save them beside the checkpoint."""
    width = max(len(k) for k in results["metrics"])
    for key, value in results["metrics"].items():
        logger.info(f"    {key:{width}s}: {value:.6f}")
    logger.info(f"    {'samples':{width}s}: {results['n_samples']}")
    out = checkpoint_path.with_name(f"{checkpoint_path.stem}.test.json")
    write_json({**results, "checkpoint": str(checkpoint_path)}, out)  # atomic, like every file we write
    logger.info(f"Results saved to {out}")


def parse_args(argv=None):
    args = argparse.ArgumentParser(description="PyTorch Template")
    args.add_argument("-c", "--config", default=None, type=str, help="config file path (default: the checkpoint's)")
    args.add_argument("-r", "--resume", required=True, type=str,
                      help="path to the checkpoint to evaluate, e.g. saved/models/<name>/<run>/model_best.pth")
    args.add_argument("-d", "--device", default=None, type=str, help="indices of GPUs to enable (default: all)")
    return ConfigParser.from_args(args, argv=argv)


def cli():
    device = dist.init_distributed()
    run_entry(lambda: main(parse_args(), device))


if __name__ == "__main__":
    cli()

