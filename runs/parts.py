"""The trainer's own state as checkpoint parts (Stateful: `state_dict()` / `load_state_dict(state)`): weights,
optimizer, scheduler and RNG streams. BaseTrainer registers each with its Checkpointer once."""
import json
import logging

import torch

from utils import distributed as dist
from utils.checkpoint import load_weights
from utils.seed import get_rng_state, set_rng_state


class ModelWeights:
    """The unwrapped model's weights (no DDP/compile prefixes), under the classic key `state_dict`."""

    def __init__(self, model, source):
        self.model, self.source = model, source  # source(): the checkpoint's path, for messages

    def state_dict(self):
        return self.model.state_dict()

    def load_state_dict(self, state):
        load_weights(self.model, state, self.source())


class OptimizerState:
    """The optimizer; not resumed when the config names another optimizer type. A fine-tune (a new run from a
    checkpoint) keeps the new config's lr and settings; a continued run keeps the checkpoint's, except the
    optimizer args its config changes (-r ... --lr X): what config.json records is what trains."""

    def __init__(self, optimizer, config, checkpointer, note):
        self.optimizer, self.config, self.checkpointer, self.note = optimizer, config, checkpointer, note

    def same_type(self):
        saved = self.checkpointer.loading["config"]
        return saved["optimizer"]["type"] == self.config["optimizer"]["type"]

    def state_dict(self):
        return self.optimizer.state_dict()

    def put(self, state):
        """Load `state` into the optimizer (the sharded adapter scatters it over the ranks instead)."""
        self.optimizer.load_state_dict(state)

    def load_state_dict(self, state):
        self.load_with(self.put, state)

    def load_with(self, put, state):
        """Load `state` through `put` (the full state, or this rank's shards), keeping what the config chose."""
        if not self.same_type():
            self.note(logging.WARNING, "Warning: Optimizer type given in config file is different from that of "
                      "checkpoint. Optimizer parameters not being resumed.")
            return
        chosen = [{k: v for k, v in group.items() if k != "params"} for group in self.optimizer.param_groups]
        put(state)
        if not self.config.run.plan.continue_run:
            for group, settings in zip(self.optimizer.param_groups, chosen, strict=True):
                group.update(settings)
            return
        saved = self.checkpointer.loading["config"]
        for key, old, new in changed_args(saved, self.config):
            self.note(logging.INFO, f"optimizer.args.{key} changed from {old} to {new}")
            for group, fresh in zip(self.optimizer.param_groups, chosen, strict=True):
                apply_arg(group, key, (saved["optimizer"].get("args") or {}).get(key), fresh)


def changed_args(saved, given):
    """[(arg, old, new)] for each optimizer arg that `given` (the config that trains) sets otherwise than
    `saved` (the checkpoint's), the values spelled as in JSON; an arg left out is "(default)"."""
    old, new = saved["optimizer"].get("args") or {}, given["optimizer"].get("args") or {}
    spelled = {key: (_spell(old, key), _spell(new, key)) for key in set(old) | set(new)}
    return [(key, *spelled[key]) for key in sorted(spelled) if spelled[key][0] != spelled[key][1]]


def _spell(args, key):
    return json.dumps(args[key]) if key in args else "(default)"


def apply_arg(group, key, old, fresh):
    """Set one changed arg on a param group from `fresh` (the group as the new config built it). The lr goes
    on along the schedule: the group's lr (a scheduler may have decayed it) is scaled by new / old, and the
    scheduler's base (`initial_lr`, read back by SchedulerState) becomes the new lr."""
    if key not in fresh:
        return
    if key == "lr" and isinstance(old, (int, float)) and old > 0:
        group["lr"] = fresh["lr"] if group["lr"] == old else group["lr"] * fresh["lr"] / old
    else:
        group[key] = fresh[key]
    if key == "lr" and "initial_lr" in fresh:
        group["initial_lr"] = fresh["initial_lr"]


class SchedulerState:
    """The lr scheduler: continued unless it or its optimizer is a new type (its state holds both's settings)."""

    def __init__(self, scheduler, optimizer_part):
        self.scheduler, self.optimizer_part = scheduler, optimizer_part

    def state_dict(self):
        return self.scheduler.state_dict()

    def load_state_dict(self, state):
        part = self.optimizer_part
        old_type = (part.checkpointer.loading["config"].get("lr_scheduler") or {}).get("type")
        if part.same_type() and old_type == (part.config.get("lr_scheduler") or {}).get("type"):
            self.scheduler.load_state_dict(state)
            if hasattr(self.scheduler, "base_lrs"):  # a changed lr is the schedule's new base (OptimizerState)
                pairs = zip(part.optimizer.param_groups, self.scheduler.base_lrs, strict=True)
                self.scheduler.base_lrs = [group.get("initial_lr", base) for group, base in pairs]
        else:
            part.note(logging.WARNING, "Warning: the optimizer or lr_scheduler type differs from the "
                      "checkpoint's; the lr_scheduler starts afresh.")


class RngStates:
    """Every rank's random streams (a collective to save). At another world size they cannot match: each rank
    is seeded from `fallback_seed()` plus its rank, so the streams stay distinct."""

    def __init__(self, fallback_seed):
        self.fallback_seed = fallback_seed

    def state_dict(self):
        return dist.all_gather_object(get_rng_state())

    def load_state_dict(self, states):
        if not states:
            return
        rank = dist.get_rank()
        if len(states) == dist.get_world_size():
            set_rng_state(states[rank])
        else:
            torch.manual_seed(self.fallback_seed() + rank)
