"""What a checkpoint holds of a trainer, and how it is put back: plain data only (weights_only-safe)."""
import logging

import torch

from utils import distributed as dist
from utils.checkpoint import check_state_dict_matches, strip_prefixes
from utils.seed import get_rng_state, set_rng_state


def capture_state(trainer, epoch, resume_batch=0, extra=None):
    """Everything needed to continue exactly, as plain data (weights_only-safe)."""
    rng_states = dist.all_gather_object(get_rng_state())  # every rank's, collective
    return {
        "arch": type(trainer.raw_model).__name__,
        "epoch": epoch,
        "resume_batch": resume_batch,
        "global_step": trainer.global_step,
        "state_dict": strip_prefixes(trainer.raw_model.state_dict()),
        "optimizer": trainer.optimizer.state_dict(),
        "lr_scheduler": trainer.lr_scheduler.state_dict() if trainer.lr_scheduler is not None else None,
        "grad_scaler": trainer.grad_scaler.state_dict() if trainer.grad_scaler is not None else None,
        "monitor": trainer.monitor.state_dict(),
        "monitor_best": float(trainer.monitor.best),
        "rng_states": rng_states,
        "world_size": dist.get_world_size(),
        "config": trainer.config.config,
        **(extra or {}),
    }


def restore_state(trainer, checkpoint):
    """Load what capture_state saved into the trainer's parts; warnings go to trainer.resume_log."""
    log, config = trainer.resume_log, trainer.config
    state_dict = strip_prefixes(checkpoint["state_dict"])
    check_state_dict_matches(trainer.raw_model, state_dict, config.resume)
    if checkpoint["config"]["arch"] != config["arch"]:
        log.append((logging.WARNING, "Warning: Architecture configuration given in config file is different from "
                    "that of checkpoint. This may yield an exception while state_dict is being loaded."))
    trainer.raw_model.load_state_dict(state_dict)
    optimizer_resumed = checkpoint["config"]["optimizer"]["type"] == config["optimizer"]["type"]
    if not optimizer_resumed:
        log.append((logging.WARNING, "Warning: Optimizer type given in config file is different from that of "
                    "checkpoint. Optimizer parameters not being resumed."))
    else:
        _load_optimizer(trainer.optimizer, checkpoint["optimizer"], keep_new_settings=not config.continue_run)
    _restore_scheduler(trainer, checkpoint, optimizer_resumed)
    if trainer.grad_scaler is not None and checkpoint.get("grad_scaler") is not None:
        trainer.grad_scaler.load_state_dict(checkpoint["grad_scaler"])
    if "monitor" in checkpoint:
        trainer.monitor.load_state_dict(checkpoint["monitor"])
    trainer.start_epoch = checkpoint["epoch"] + 1
    trainer.last_epoch = checkpoint["epoch"]
    trainer.global_step = checkpoint.get("global_step", 0)
    _restore_rng(checkpoint.get("rng_states"), int(config["seed"]) + 1000 * trainer.start_epoch)


def _load_optimizer(optimizer, state, keep_new_settings):
    """Restore the optimizer; when fine-tuning (-c with -r), keep the new config's lr and settings."""
    chosen = [{k: v for k, v in group.items() if k != "params"} for group in optimizer.param_groups]
    optimizer.load_state_dict(state)
    if keep_new_settings:
        for group, settings in zip(optimizer.param_groups, chosen, strict=True):
            group.update(settings)


def _restore_scheduler(trainer, checkpoint, optimizer_resumed):
    """Continue the scheduler's schedule, unless it or its optimizer is a new one.

    A scheduler's state holds its optimizer's base lrs and its own type's
    settings, so a changed optimizer or scheduler type starts it afresh.
    """
    if trainer.lr_scheduler is None or checkpoint.get("lr_scheduler") is None:
        return
    old_type = (checkpoint["config"].get("lr_scheduler") or {}).get("type")
    if optimizer_resumed and old_type == (trainer.config.get("lr_scheduler") or {}).get("type"):
        trainer.lr_scheduler.load_state_dict(checkpoint["lr_scheduler"])
    else:
        trainer.resume_log.append((logging.WARNING, "Warning: the optimizer or lr_scheduler type differs from "
                                   "the checkpoint's; the lr_scheduler starts afresh."))


def _restore_rng(rng_states, fallback_seed):
    if not rng_states:
        return
    rank = dist.get_rank()
    if len(rng_states) == dist.get_world_size():
        set_rng_state(rng_states[rank])
    else:  # another number of processes: streams cannot match; keep them distinct per rank
        torch.manual_seed(fallback_seed + rank)
