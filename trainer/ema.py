"""The averaged model (`trainer.ema`): an exponential moving average of the weights, kept beside the trained
model as plain tensors on the parameters' device, and one checkpoint part (`ema`).

Not `torch.optim.swa_utils.AveragedModel`: it deep-copies the model, which a sharded (FSDP2) model refuses.
The average is a list of tensors updated with one `torch._foreach_lerp_` over the parameters; buffers
(BatchNorm statistics) are copied. Under DDP each rank averages its own (identical) replica."""
import logging
from contextlib import contextmanager

import torch

from utils.config.ema_option import ema_settings
from utils.errors import UserError

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
        self.averaged_names = [k for k, t in state.items() if id(t) in params and t.is_floating_point()]
        self.copied_names = [k for k in state if k not in self.averaged_names]
        self.live = [state[k] for k in self.averaged_names]
        self.live_copied = [state[k] for k in self.copied_names]
        with torch.no_grad():
            self.avg = [t.detach().clone() for t in self.live]
            self.avg_copied = [t.detach().clone() for t in self.live_copied]
        self.n_averaged = 0  # updates so far
        self.steps = 0  # optimizer steps seen

    @classmethod
    def from_option(cls, value, model, note):
        """The average `trainer.ema` asks for, or None when it is off."""
        settings = ema_settings(value)
        return cls(model, settings, note) if settings is not None else None

    @torch.no_grad()
    def update(self):
        """Called after every optimizer step; averages on the steps the settings pick. No host sync."""
        self.steps += 1
        if self.steps <= self.start or (self.steps - self.start) % self.every:
            return
        if self.n_averaged == 0:
            torch._foreach_copy_(self.avg, [t.detach() for t in self.live])
        else:
            torch._foreach_lerp_(self.avg, [t.detach() for t in self.live], 1.0 - self.decay)
        if self.avg_copied:
            torch._foreach_copy_(self.avg_copied, [t.detach() for t in self.live_copied])
        self.n_averaged += 1

    @torch.no_grad()
    def _follow_until_started(self):
        if self.n_averaged == 0:  # nothing averaged yet: the average is the weights
            torch._foreach_copy_(self.avg + self.avg_copied, [t.detach() for t in self.live + self.live_copied])

    def weights(self):
        """{name: tensor} like the model's state_dict, holding the averaged weights."""
        self._follow_until_started()
        by_name = dict(zip(self.averaged_names + self.copied_names, self.avg + self.avg_copied, strict=True))
        return {name: by_name[name] for name in self.names}

    @contextmanager
    def swapped_in(self):
        """The model holds the averaged weights inside the block, its own (bit for bit) after it."""
        self._follow_until_started()
        live, avg = self.live + self.live_copied, self.avg + self.avg_copied
        with torch.no_grad():
            saved = [t.detach().clone() for t in live]
            torch._foreach_copy_([t.detach() for t in live], avg)
        try:
            yield
        finally:
            with torch.no_grad():
                torch._foreach_copy_([t.detach() for t in live], saved)

    def log_entry(self):
        """metrics.csv's column saying which weights the epoch's val_ metrics measured (1: the average)."""
        return {"val_on_ema": int(self.validate)}

    # ---- the checkpoint part ---------------------------------------------------
    def state_dict(self):
        return {"weights": self.weights(), "n_averaged": self.n_averaged,
                "steps": self.steps, **{k: self.settings[k] for k in SETTINGS}}

    def load_state_dict(self, state):
        weights = state["weights"]
        self._check_fits(weights)
        with torch.no_grad():
            torch._foreach_copy_(self.avg + self.avg_copied,
                                 [weights[k] for k in self.averaged_names + self.copied_names])
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
        ours = dict(zip(self.averaged_names + self.copied_names, self.avg + self.avg_copied, strict=True))
        problems = [f"missing {k}" for k in ours if k not in weights]
        problems += [f"unexpected {k}" for k in weights if k not in ours]
        problems += [f"{k} {tuple(weights[k].shape)} vs {tuple(t.shape)}" for k, t in ours.items()
                     if k in weights and tuple(weights[k].shape) != tuple(t.shape)]
        if problems:
            raise UserError(f"the checkpoint's averaged weights (ema) do not fit this model ({', '.join(problems[:4])}"
                            f"{' ...' if len(problems) > 4 else ''}); resume with the arch they were made for, "
                            "or without them: -o trainer.ema=null")
