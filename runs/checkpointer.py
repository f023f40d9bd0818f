"""Checkpointer: every part a checkpoint holds, registered once as a Stateful (`state_dict()` /
`load_state_dict(state)`); `save_epoch` / `save_position` write them as one commit of the run, `load` puts
them back. When to save lives here too: every save_period epochs, on improvement, and mid-epoch by
trainer.checkpoint_interval. torchtitan's CheckpointManager is the model (docs/customizing.md, Saved parts)."""
import io

import torch

from runs.checkpoint_interval import CheckpointInterval
from runs.files import BEST, LATEST, RUN_UID, epoch_file
from runs.folder import epoch_checkpoints
from utils import distributed as dist


class Checkpointer:
    def __init__(self, run, config, options, logger):
        self.run, self.config, self.logger = run, config, logger
        self.parts = {}  # checkpoint key -> Stateful (None: saved as None, e.g. a disabled GradScaler)
        self.save_period, self.keep_last = options.save_period, options.keep_last
        self.interval = CheckpointInterval(options.checkpoint_interval)  # mid-epoch saves
        self.loading = None  # the checkpoint being loaded: parts that compare configs read its "config"

    def register(self, key, part):
        """Save `part.state_dict()` under `key` in every checkpoint and give it back on load."""
        if key in self.parts:
            raise ValueError(f"checkpoint part {key!r} is registered twice")
        self.parts[key] = part

    def state(self, **position):
        """Everything needed to continue exactly, as plain data (a collective: every rank calls it)."""
        state = {**position, "world_size": dist.get_world_size(), "config": self.config,
                 RUN_UID: self.run.uid}  # whose checkpoint it is: a stray one in another run's folder is skipped
        state.update({key: part.state_dict() if part is not None else None for key, part in self.parts.items()})
        return state

    def load(self, checkpoint):
        """Put each registered part back from `checkpoint`, in registration order; a part the checkpoint lacks
        (an older checkpoint, a part added since) keeps its fresh state, and is told so when it has a
        `missing_from_checkpoint()` (the averaged model then starts from the loaded weights)."""
        self.loading = checkpoint
        try:
            for key, part in self.parts.items():
                if part is not None and checkpoint.get(key) is not None:
                    part.load_state_dict(checkpoint[key])
                elif part is not None and hasattr(part, "missing_from_checkpoint"):
                    part.missing_from_checkpoint()
        finally:
            self.loading = None

    def save_epoch(self, epoch, improved, last, extra_files=list, **position):
        """The epoch as one commit: model_latest, checkpoint-epoch<N> (every save_period, and the last),
        model_best (on improvement) and `extra_files()`'s (name, bytes) (the metrics.csv row, made only where
        it is written); a kill leaves all or none."""
        state = self.state(epoch=epoch, **position)
        if not dist.is_main_process():
            return
        names = [LATEST]
        if epoch % self.save_period == 0 or last:
            names.append(epoch_file(epoch))
            self.logger.info(f"Saving checkpoint: {self.run.folder / names[-1]} ...")
        if improved:
            names.append(BEST)
            self.logger.info(f"Saving current best: {BEST} ...")
        self.write(state, names, extra_files())
        if self.keep_last:
            for _, old in epoch_checkpoints(self.run.folder)[:-self.keep_last]:
                old.unlink(missing_ok=True)

    def save_position(self, **position):
        """model_latest.pth alone, at a position inside an epoch (a collective: every rank calls it)."""
        state = self.state(**position)
        if dist.is_main_process():
            self.write(state, [LATEST])

    def write(self, state, names, extra_files=()):
        """`state` under each of `names`, with each (name, bytes) of `extra_files`, as one commit of the run."""
        buffer = io.BytesIO()
        torch.save(state, buffer)
        self.run.commit([(name, buffer.getbuffer()) for name in names] + list(extra_files))
