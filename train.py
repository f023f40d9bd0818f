"""Train a model from a config: python train.py -c config.json (see README)."""
import utils.before_torch  # noqa: F401  (first: OpenMP reads its wait policy when torch loads it)

# isort: split
import argparse
import collections
import logging

import torch

import data_loader.data_loaders as module_data
import model.loss as module_loss
import model.metric as module_metric
import model.model as module_arch
from parse_config import ConfigParser
from runs.entry import run_entry
from trainer.dry_run import dry_run
from trainer.trainer import Trainer
from utils import distributed as dist
from utils.config.check import check_sections
from utils.cpu_threads import use_cpu_threads
from utils.lookup import accepts_keyword, find_by_name
from utils.run_names import run_name
from utils.seed import seed_everything
from utils.sharding import check_strategy
from utils.util import place_model


def main(config, device=None):
    trainer = build_trainer(config, device)
    if config.dry_run:  # one training and one validation batch; nothing saved, no run folder
        line = dry_run(trainer)
        if dist.is_main_process():
            print(line)
    else:
        trainer.train()


def build_trainer(config, device=None, search_workers_here=None):
    """Every part the config names, put together into a Trainer; nothing trained, no folder made.
    `search_workers_here`: tune.py's workers on this machine (each trial measures the load again)."""
    check_sections(config.config, ("arch", "data_loader", "optimizer", "loss", "metrics"))
    config.run.check_free()  # a run another job trains: one line now, before any data is loaded
    config.check_save_dir()
    logger = config.get_logger("train")
    options = config.trainer_options
    seed_everything(config["seed"], dist.get_rank(), options.deterministic)
    threads = use_cpu_threads(options.cpu_threads, options.deterministic, search_workers_here or 1,
                              fresh=search_workers_here is not None)
    config.run.note(logging.INFO, threads)  # into info.log once the run folder exists
    sharding = check_strategy(options.strategy, options.amp)
    if sharding:
        config.run.note(logging.INFO, sharding)

    data_loader = config.init_obj("data_loader", module_data, **_loader_seed(config))
    valid_data_loader = data_loader.split_validation()

    model = config.init_obj("arch", module_arch)
    logger.info(model, extra={"once": "model"})  # tune.py: on the console for the first trial only
    model, device = place_model(model, config["n_gpu"], device, compile=options.compile, ddp=True,
                                strategy=options.strategy, amp=options.amp)  # the optimizer comes after: sharded

    criterion = config.init_named("loss", module_loss)
    metrics = [find_by_name(module_metric, met, "metric") for met in config["metrics"]]

    # build optimizer, learning rate scheduler; leave lr_scheduler out of the config to disable it
    trainable_params = filter(lambda p: p.requires_grad, model.parameters())
    optimizer = config.init_obj("optimizer", torch.optim, trainable_params, **_fused(config, device))
    lr_scheduler = config.init_obj("lr_scheduler", torch.optim.lr_scheduler, optimizer) \
        if config.get("lr_scheduler") else None
    return Trainer(model, criterion, metrics, optimizer, config=config, device=device, data_loader=data_loader,
                   valid_data_loader=valid_data_loader, lr_scheduler=lr_scheduler)


def _loader_seed(config):
    """Hand the run's seed to the data loader (split and shuffle), unless the config sets one."""
    loader_cls = find_by_name(module_data, config["data_loader"]["type"], "data_loader type")
    if "seed" in config["data_loader"].get("args", {}) or not accepts_keyword(loader_cls, "seed"):
        return {}
    return {"seed": config["seed"]}


def _fused(config, device):
    """Fused Adam/AdamW on CUDA: one kernel for the whole step (the config can say otherwise)."""
    opt = config["optimizer"]
    if device.type == "cuda" and opt["type"] in ("Adam", "AdamW") and "fused" not in opt.get("args", {}):
        return {"fused": True}
    return {}


def parse_args(argv=None):
    args = argparse.ArgumentParser(description="PyTorch Template")
    args.add_argument("-c", "--config", default=None, type=str, help="config file path (default: None)")
    args.add_argument("-r", "--resume", default=None, type=str, help="path to latest checkpoint (default: None)")
    args.add_argument("-d", "--device", default=None, type=str, help="indices of GPUs to enable (default: all)")
    args.add_argument("--run_id", default=None, type=run_name,
                      help="name the run folder; run again, the run continues from its newest checkpoint")
    args.add_argument("--dry_run", action="store_true",
                      help="run one training and one validation batch to check that the parts fit; save nothing")

    return ConfigParser.from_args(args, custom_args(), argv)


def custom_args():
    """Custom cli options to modify configuration from default values given in json file; tune.py takes them too."""
    CustomArgs = collections.namedtuple("CustomArgs", "flags type target")
    return [CustomArgs(["--lr", "--learning_rate"], type=non_negative_float, target="optimizer;args;lr"),
            CustomArgs(["--bs", "--batch_size"], type=positive_int, target="data_loader;args;batch_size")]


def positive_int(text):
    if int(text) <= 0:
        raise ValueError(text)
    return int(text)


def non_negative_float(text):
    if not float(text) >= 0:  # NaN too
        raise ValueError(text)
    return float(text)


def cli():
    device = dist.init_distributed()  # None unless launched by torchrun
    run_entry(lambda: main(parse_args(), device))


if __name__ == "__main__":
    cli()
