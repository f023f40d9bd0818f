"""Evaluate a checkpoint on the test split: python test.py -r saved/models/.../model_best.pth"""
import utils.before_torch  # noqa: F401  (first: OpenMP reads its wait policy when torch loads it)

# isort: split
import argparse

import torch

import data_loader.data_loaders as module_data
import model.loss as module_loss
import model.metric as module_metric
import model.model as module_arch
from parse_config import ConfigParser
from runs.entry import run_entry
from runs.files import BEST, test_results_file
from runs.run import write_while_free
from runs.start import StartPlan, decide_start
from trainer.evaluation import evaluate
from trainer.progress import use_progress_bar
from utils import distributed as dist
from utils.checkpoint import load_weights
from utils.config.check import check_sections
from utils.config.overrides import merged_config, updated_config
from utils.cpu_threads import use_cpu_threads
from utils.errors import UserError
from utils.export.formats import format_of, load_exported
from utils.export.sidecar import read_sidecar
from utils.lookup import find_by_name
from utils.util import place_model


def main(config, device=None):
    logger = config.get_logger("test")
    check_sections(config.config, ("arch", "data_loader", "loss", "metrics"))
    exported = config.resume is not None and format_of(config.resume) is not None
    which = None  # the weights evaluated, when the checkpoint holds two sets (trainer.ema)
    if config.run.checkpoint is None and not exported:
        raise UserError(f"test.py needs a checkpoint: python test.py -r saved/models/<name>/<run>/{BEST}")

    # the test split, built from the checkpoint's own loader config
    config["data_loader"].setdefault("args", {}).update(shuffle=False, validation_split=0.0, training=False)
    data_loader = config.init_obj("data_loader", module_data).evaluation_loader()
    logger.info(use_cpu_threads(config.trainer_options.cpu_threads, config.trainer_options.deterministic))

    if exported:  # an exported model runs on the CPU, in eval mode already (its .eval() raises)
        model, device = load_exported(config.resume), torch.device("cpu")
        logger.info(f"Exported model {config.resume} ({format_of(config.resume).name}), on the CPU")
    else:
        model = config.init_obj("arch", module_arch)
        logger.info(model)
        weights, which = chosen_weights(config.run.checkpoint, getattr(config.cli_args, "raw", False))
        load_weights(model, weights, config.resume)
        model, device = place_model(model, config["n_gpu"], device)
        model.eval()

    loss_fn = config.init_named("loss", module_loss)
    metric_fns = [find_by_name(module_metric, met, "metric") for met in config["metrics"]]
    metrics = evaluate(model, data_loader, loss_fn, metric_fns, device, "Test",
                       use_progress_bar(config.trainer_options.verbosity))
    if dist.is_main_process():  # the results are what test.py is for: shown at verbosity 0 too
        results_logger = config.get_logger("test.results", verbosity=max(1, config.trainer_options.verbosity))
        results = {"metrics": metrics.result(), "n_samples": metrics.count("loss")}
        report({**results, "weights": which} if which else results, config.resume, results_logger)


def chosen_weights(checkpoint, raw):
    """(weights, which): the checkpoint's averaged weights (trainer.ema) when it has them and --raw is not given,
    else its trained ones; `which` names them for the output (None: a checkpoint without an average)."""
    ema = checkpoint.get("ema")
    if ema is None:
        return checkpoint["state_dict"], None
    if raw:
        return checkpoint["state_dict"], "raw (trained; the checkpoint also holds an average)"
    return ema["weights"], f"ema (decay {ema['decay']}, {ema['n_averaged']} updates; --raw: the trained ones)"


def report(results, checkpoint_path, logger):
    """Print the results as a table and save them beside the checkpoint."""
    width = max(len(k) for k in results["metrics"])
    if "weights" in results:
        logger.info(f"    {'weights':{width}s}: {results['weights']}")
    for key, value in results["metrics"].items():
        logger.info(f"    {key:{width}s}: {value:.6f}")
    logger.info(f"    {'samples':{width}s}: {results['n_samples']}")
    out = test_results_file(checkpoint_path, exported=format_of(checkpoint_path) is not None)
    # under the run's lock: a run another job is training is not written into (docs/outputs.md)
    refused = write_while_free(out.parent, out.name, {**results, "checkpoint": str(checkpoint_path)})
    if refused:
        logger.warning(f"Warning: results not saved to {out}: {refused}; run test.py again once that job ends")
    else:
        logger.info(f"Results saved to {out}")


def parse_args(argv=None):
    args = argparse.ArgumentParser(description="PyTorch Template")
    args.add_argument("-c", "--config", default=None, type=str, help="config file path (default: the checkpoint's)")
    args.add_argument("-r", "--resume", required=True, type=str,
                      help=f"path to the checkpoint to evaluate, e.g. saved/models/<name>/<run>/{BEST}")
    args.add_argument("--raw", action="store_true",
                      help="evaluate the trained weights even when the checkpoint holds averaged ones (trainer.ema)")
    args.add_argument("-d", "--device", default=None, type=str, help="indices of GPUs to enable (default: all)")
    return ConfigParser.from_args(args, argv=argv, start=start_of_test)


def start_of_test(request):
    """-r names a checkpoint, or a model export.py wrote: its run's config is in the JSON beside it (-c keys
    replace its keys, as they do a checkpoint's)."""
    if request.resume is None or format_of(request.resume) is None:
        return decide_start(request)
    format_of(request.resume).check_installed(f"test.py on {request.resume.name}", to_run=True)
    config = merged_config(read_sidecar(request.resume)["config"], request.given or {})
    return StartPlan(updated_config(config, request.modification, request.overrides), request.resume)


def cli():
    device = dist.init_distributed()
    run_entry(lambda: main(parse_args(), device))


if __name__ == "__main__":
    cli()

