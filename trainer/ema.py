"""The averaged model (`trainer.ema`): an exponential moving average of the weights, kept beside the trained
model as plain tensors on the parameters' device, and one checkpoint part (`ema`).

Not `torch.optim.swa_utils.AveragedModel`: it deep-copies the model, which a sharded (FSDP2) model refuses.
The average is a list of tensors updated with one `torch._foreach_lerp_` over the parameters; buffers
(BatchNorm statistics) are copied. Under DDP each rank averages its own (identical) replica; under FSDP each
rank averages its own shard of every parameter (ShardedAveragedWeights, below)."""
import logging
from contextlib import contextmanager

import torch

from utils import distributed as dist
from utils.config.ema_option import ema_settings
from utils.errors import UserError
from utils.sharding import is_sharded

SETTINGS = ("decay", "every", "start", "validate")


class AveragedWeights:
    """avg <- decay * avg + (1 - decay) * weights after optimizer steps start+every, start+2*every, ...; the first
    update copies. Until then (n_averaged == 0) the average is the weights themselves."""

    def __init__(self, model, settings, note):
        self.settings, self.note = settings, note  # note(level, line): a line for the run's info.log
        self.decay, self.every, self.start = settings["decay"], settings["every"], settings["start"]
        self.validate = settings["validate"]
        state = model.state_dict(keep_vars=True)  # the live tensors, under the checkpoint's key names
        params = {id(p) for p in model.parameters()}
        self.names = list(state)
        self.shapes = {k: tuple(t.shape) for k, t in state.items()}  # a sharded parameter's: the full shape
        self.averaged_names = [k for k, t in state.items() if id(t) in params and t.is_floating_point()]
        self.copied_names = [k for k in state if k not in self.averaged_names]
        self.params = [state[k] for k in self.averaged_names]
        self.live_copied = [state[k] for k in self.copied_names]
        with torch.no_grad():
            self.avg = [t.clone() for t in self._live_params()]
            self.avg_copied = [t.detach().clone() for t in self.live_copied]
        self.n_averaged = 0  # updates so far
        self.steps = 0  # optimizer steps seen

    @classmethod
    def from_option(cls, value, model, note):
        """The average `trainer.ema` asks for, or None when it is off; sharded like the model."""
        settings = ema_settings(value)
        if settings is None:
            return None
        return (ShardedAveragedWeights if is_sharded(model) else cls)(model, settings, note)

    def _live_params(self):
        """The tensors the optimizer updates in place (detached views)."""
        return [t.detach() for t in self.params]

    def _live(self):
        return self._live_params() + [t.detach() for t in self.live_copied]

    @torch.no_grad()
    def update(self):
        """Called after every optimizer step; averages on the steps the settings pick. No host sync."""
        self.steps += 1
        if self.steps <= self.start or (self.steps - self.start) % self.every:
            return
        if self.n_averaged == 0:
            torch._foreach_copy_(self.avg, self._live_params())
        else:
            torch._foreach_lerp_(self.avg, self._live_params(), 1.0 - self.decay)
        if self.avg_copied:
            torch._foreach_copy_(self.avg_copied, [t.detach() for t in self.live_copied])
        self.n_averaged += 1

    @torch.no_grad()
    def _follow_until_started(self):
        if self.n_averaged == 0:  # nothing averaged yet: the average is the weights
            torch._foreach_copy_(self.avg + self.avg_copied, self._live())

    def weights(self):
        """{name: tensor} like the model's state_dict, holding the averaged weights."""
        self._follow_until_started()
        by_name = dict(zip(self.averaged_names + self.copied_names, self.avg + self.avg_copied, strict=True))
        return {name: by_name[name] for name in self.names}

    @contextmanager
    def swapped_in(self):
        """The model holds the averaged weights inside the block, its own (bit for bit) after it."""
        self._follow_until_started()
        live, avg = self._live(), self.avg + self.avg_copied
        with torch.no_grad():
            saved = [t.clone() for t in live]
            torch._foreach_copy_(live, avg)
        try:
            yield
        finally:
            with torch.no_grad():
                torch._foreach_copy_(live, saved)

    def log_entry(self):
        """metrics.csv's column saying which weights the epoch's val_ metrics measured (1: the average)."""
        return {"val_on_ema": int(self.validate)}

    # ---- the checkpoint part ---------------------------------------------------
    def state_dict(self):
        return {"weights": self.weights(), **self._counts()}

    def _counts(self):
        return {"n_averaged": self.n_averaged, "steps": self.steps, **{k: self.settings[k] for k in SETTINGS}}

    def load_state_dict(self, state):
        self._check_fits(state["weights"])
        self._put(state["weights"])
        self._take_counts(state)

    @torch.no_grad()
    def _put(self, weights):
        torch._foreach_copy_(self.avg + self.avg_copied,
                             [weights[k].to(t.device) for k, t in zip(self.averaged_names + self.copied_names,
                                                                      self.avg + self.avg_copied, strict=True)])

    def _take_counts(self, state):
        self.n_averaged, self.steps = state["n_averaged"], state["steps"]
        changed = [f"{k} {state[k]!r} -> {self.settings[k]!r}" for k in SETTINGS if state.get(k) != self.settings[k]]
        if changed:
            self.note(logging.INFO, f"trainer.ema differs from the checkpoint's ({', '.join(changed)}): the "
                      f"average of {self.n_averaged} updates continues with the new settings")

    def missing_from_checkpoint(self):
        """The checkpoint has no average (made without trainer.ema): start one from the loaded weights."""
        self.n_averaged, self.steps = 0, 0
        self.note(logging.INFO, "The checkpoint has no averaged weights (EMA): the average starts from its "
                  f"weights, updating from optimizer step {self.start + self.every} of this resume on")

    def _check_fits(self, weights):
        ours = {k: self.shapes[k] for k in self.averaged_names + self.copied_names}
        problems = [f"missing {k}" for k in ours if k not in weights]
        problems += [f"unexpected {k}" for k in weights if k not in ours]
        problems += [f"{k} {tuple(weights[k].shape)} vs {shape}" for k, shape in ours.items()
                     if k in weights and tuple(weights[k].shape) != shape]
        if problems:
            raise UserError(f"the checkpoint's averaged weights (ema) do not fit this model ({', '.join(problems[:4])}"
                            f"{' ...' if len(problems) > 4 else ''}); resume with the arch they were made for, "
                            "or without them: -o trainer.ema=null")


class ShardedAveragedWeights(AveragedWeights):
    """The average of an FSDP2 model, sharded like it: each rank averages the local shard of every parameter
    (a DTensor). The checkpoint part (`state_dict`) is still the full average, gathered to rank 0 on the CPU
    (a collective), so it loads in one process and at any world size; `sharded_state_dict` is this rank's
    shards as DTensors, for torch.distributed.checkpoint."""

    def __init__(self, model, settings, note):
        self.model = model
        super().__init__(model, settings, note)

    def _live_params(self):
        return [p.to_local().detach() for p in self.params]  # the shard the optimizer updates and FSDP gathers

    @contextmanager
    def swapped_in(self):
        with super().swapped_in():
            self._buffers_of_rank0(self.live_copied)  # rank 0's averaged buffers, as a checkpoint holds them
            self._reshard()  # the root module keeps its gathered weights after a forward: gather the average
            try:
                yield
            finally:
                self._reshard()  # and the raw weights again after the block

    @staticmethod
    def _buffers_of_rank0(buffers):
        """Each rank's buffers (BatchNorm statistics) drift apart: every rank takes rank 0's (a collective)."""
        for buffer in buffers:
            torch.distributed.broadcast(buffer.detach(), src=0)

    def _reshard(self):
        from torch.distributed.fsdp import FSDPModule
        for module in self.model.modules():
            if isinstance(module, FSDPModule):
                module.reshard()

    def _as_dtensors(self):
        """This rank's averaged shards as DTensors over the parameters' mesh (views of the average)."""
        from torch.distributed.tensor import DTensor
        return [DTensor.from_local(local, p.device_mesh, p.placements, shape=p.shape, stride=p.stride(),
                                   run_check=False) for local, p in zip(self.avg, self.params, strict=True)]

    def weights(self):
        """The full average on rank 0's CPU ({} on the other ranks); every rank must call it."""
        self._follow_until_started()
        main = dist.is_main_process()
        full = [t.full_tensor() for t in self._as_dtensors()]  # one all-gather a tensor
        by_name = dict(zip(self.averaged_names + self.copied_names, full + self.avg_copied, strict=True))
        return {name: by_name[name].cpu() for name in self.names} if main else {}

    def state_dict(self):
        weights = self.weights()
        return {"weights": weights, **self._counts()} if dist.is_main_process() else {}

    @torch.no_grad()
    def _put(self, weights):
        """Full tensors (every rank read the checkpoint): each rank keeps its own slice, no communication."""
        from torch.distributed.tensor import distribute_tensor
        shards = [distribute_tensor(weights[k].to(p.device), p.device_mesh, p.placements, src_data_rank=None)
                  for k, p in zip(self.averaged_names, self.params, strict=True)]
        super()._put({**weights, **{k: s.to_local() for k, s in zip(self.averaged_names, shards, strict=True)}})

    def sharded_state_dict(self):
        """{"weights": this rank's averaged shards as DTensors (buffers as plain tensors), counts, settings}."""
        self._follow_until_started()
        self._buffers_of_rank0(self.avg_copied)  # DCP keeps one rank's copy of a plain tensor: make them agree
        tensors = dict(zip(self.averaged_names, self._as_dtensors(), strict=True))
        tensors.update(zip(self.copied_names, self.avg_copied, strict=True))
        return {"weights": {name: tensors[name] for name in self.names}, **self._counts()}

    @torch.no_grad()
    def load_sharded_state_dict(self, state):
        """Put back a `sharded_state_dict()` (as torch.distributed.checkpoint.load fills it in place)."""
        weights = state["weights"]
        self._check_fits(weights)
        local = {k: getattr(t, "to_local", lambda t=t: t)() for k, t in weights.items()}
        super()._put(local)
        self._take_counts(state)

