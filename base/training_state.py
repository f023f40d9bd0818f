"""Putting a checkpoint's weights, optimizer, scheduler and RNG states back into a trainer."""
import logging

import torch

from utils import distributed as dist
from utils.checkpoint import load_weights
from utils.seed import set_rng_state


def restore_weights_and_optimizer(trainer, checkpoint):
    """Load the checkpoint's weights, optimizer and scheduler; warnings go to trainer.resume_log."""
    log, config = trainer.resume_log, trainer.config
    load_weights(trainer.raw_model, checkpoint["state_dict"], config.resume)
    if checkpoint["config"]["arch"] != config["arch"]:
        log.append((logging.WARNING, "Warning: Architecture configuration given in config file is different from "
                    "that of checkpoint. This may yield an exception while state_dict is being loaded."))
    optimizer_resumed = checkpoint["config"]["optimizer"]["type"] == config["optimizer"]["type"]
    if not optimizer_resumed:
        log.append((logging.WARNING, "Warning: Optimizer type given in config file is different from that of "
                    "checkpoint. Optimizer parameters not being resumed."))
    else:
        _load_optimizer(trainer.optimizer, checkpoint["optimizer"], keep_new_settings=not config.continue_run)
    _restore_scheduler(trainer, checkpoint, optimizer_resumed)


def _load_optimizer(optimizer, state, keep_new_settings):
    """Restore the optimizer; when fine-tuning (-c with -r), keep the new config's lr and settings."""
    chosen = [{k: v for k, v in group.items() if k != "params"} for group in optimizer.param_groups]
    optimizer.load_state_dict(state)
    if keep_new_settings:
        for group, settings in zip(optimizer.param_groups, chosen, strict=True):
            group.update(settings)


def _restore_scheduler(trainer, checkpoint, optimizer_resumed):
    """Continue the scheduler's schedule, unless it or its optimizer is a new one (its state holds both's settings)."""
    if trainer.lr_scheduler is None or checkpoint.get("lr_scheduler") is None:
        return
    old_type = (checkpoint["config"].get("lr_scheduler") or {}).get("type")
    if optimizer_resumed and old_type == (trainer.config.get("lr_scheduler") or {}).get("type"):
        trainer.lr_scheduler.load_state_dict(checkpoint["lr_scheduler"])
    else:
        trainer.resume_log.append((logging.WARNING, "Warning: the optimizer or lr_scheduler type differs from "
                                   "the checkpoint's; the lr_scheduler starts afresh."))


def restore_rng(rng_states, fallback_seed):
    if not rng_states:
        return
    rank = dist.get_rank()
    if len(rng_states) == dist.get_world_size():
        set_rng_state(rng_states[rank])
    else:  # another number of processes: streams cannot match; keep them distinct per rank
        torch.manual_seed(fallback_seed + rank)
