"""Checkpointer: every part a checkpoint holds, registered once as a Stateful (`state_dict()` /
`load_state_dict(state)`); `save_epoch` / `save_position` write them as one commit of the run, `load` puts
them back. When to save lives here too: every save_period epochs, on improvement, and mid-epoch by
trainer.checkpoint_interval. torchtitan's CheckpointManager is the model (docs/customizing.md, Saved parts).

A sharded model (FSDP at more than one rank) saves each part that offers `sharded_state_dict()` into a fresh
shard folder, every rank its own shards, before rank 0 commits the .pth that names it: the commit is the switch
(docs/checkpoints.md, Sharded checkpoints). Such a part loads back through `load_sharded_state_dict(state)`."""
import io
import shutil
import uuid

import torch

from runs.checkpoint_interval import CheckpointInterval
from runs.files import BEST, LATEST, RUN_UID, SHARDS, epoch_file, shard_folder_name
from runs.folder import epoch_checkpoints
from runs.shard_folders import drop_unreferenced, shard_folder, shards_of, with_full_parts
from utils import distributed as dist
from utils import safe_dcp
from utils.atomic import save_failed
from utils.errors import UserError


class Checkpointer:
    def __init__(self, run, config, options, logger, sharded=False):
        self.run, self.config, self.logger = run, config, logger
        self.sharded = sharded  # the model is sharded over the ranks: parts that can save their shards do
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
        """Everything needed to continue exactly, as plain data (a collective: every rank calls it); under a
        sharded model the sharded parts are written to a fresh shard folder first, and the state names it."""
        state = {**position, "world_size": dist.get_world_size(), "config": self.config,
                 RUN_UID: self.run.uid}  # whose checkpoint it is: a stray one in another run's folder is skipped
        sharded = self._sharded_parts()
        state.update({key: part.state_dict() if part is not None else None for key, part in self.parts.items()
                      if key not in sharded})
        if sharded:
            state[SHARDS] = self._write_shards(sharded, position)
        return state

    def _sharded_parts(self):
        """{key: part} of the parts saved as shards: those that can, when the model is sharded."""
        if not self.sharded:
            return {}
        return {key: part for key, part in self.parts.items() if hasattr(part, "sharded_state_dict")}

    def _write_shards(self, parts, position):
        """Every rank writes its shards of `parts` into a new folder of the run; its record for the .pth."""
        token = dist.broadcast_object(uuid.uuid4().hex[:8])
        name = shard_folder_name(position.get("epoch", 0), position.get("global_step", 0), token)
        try:
            safe_dcp.save({key: part.sharded_state_dict() for key, part in parts.items()}, self.run.folder / name)
        except (OSError, RuntimeError) as err:  # a full disk on any rank: every rank gets its error from DCP
            if not isinstance(err, OSError) and not safe_dcp.is_failed_write(err):
                raise
            if dist.is_main_process():
                shutil.rmtree(self.run.folder / name, ignore_errors=True)  # never committed: nothing names it
            raise save_failed(safe_dcp.as_os_error(err), [self.run.folder / name], shown=[name],
                              hint=f"free space, then resume with {self.run.resume_command()}") from None
        return {"folder": name, "parts": list(parts)}

    def load(self, checkpoint):
        """Put each registered part back from `checkpoint`, in registration order; a part the checkpoint lacks
        (an older checkpoint, a part added since) keeps its fresh state, and is told so when it has a
        `missing_from_checkpoint()` (the averaged model then starts from the loaded weights). A sharded
        checkpoint's parts load their own slices (any world size) when the model is sharded, else whole."""
        self.loading = checkpoint
        try:
            shards = self._read_shards(checkpoint)
            if any(self.parts.get(key) is not None and key not in shards for key in self._saved_as_shards(checkpoint)):
                checkpoint = with_full_parts(checkpoint, self.run.plan.resume)  # this run's model is not sharded
            for key, part in self.parts.items():
                if key in shards:
                    part.load_sharded_state_dict(shards[key])
                elif part is not None and checkpoint.get(key) is not None:
                    part.load_state_dict(checkpoint[key])
                elif part is not None and hasattr(part, "missing_from_checkpoint"):
                    part.missing_from_checkpoint()
        finally:
            self.loading = None

    @staticmethod
    def _saved_as_shards(checkpoint):
        return (shards_of(checkpoint) or {}).get("parts") or ()

    def _read_shards(self, checkpoint):
        """{key: the part's sharded state, filled from the checkpoint's shard folder} for each part saved and
        loaded as shards (a collective: every rank reads its own slices)."""
        record = shards_of(checkpoint)
        if record is None:
            return {}
        parts = {key: part for key, part in self._sharded_parts().items() if key in record["parts"]}
        if not parts:
            return {}
        folder = shard_folder(checkpoint, self.run.plan.resume)
        templates = {key: part.sharded_state_dict() for key, part in parts.items()}
        differ = safe_dcp.mismatches(templates, folder)
        if differ:
            raise UserError(f"checkpoint {self.run.plan.resume} was made for another model or optimizer (its "
                            f"shards: {differ}); use a checkpoint of this arch and optimizer")
        safe_dcp.load(templates, folder)
        return templates

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
        if SHARDS in state:
            drop_unreferenced(self.run.folder)  # the folders of replaced and removed checkpoints

    def save_position(self, **position):
        """model_latest.pth alone, at a position inside an epoch (a collective: every rank calls it)."""
        state = self.state(**position)
        if dist.is_main_process():
            self.write(state, [LATEST])
            if SHARDS in state:
                drop_unreferenced(self.run.folder)

    def write(self, state, names, extra_files=()):
        """`state` under each of `names`, with each (name, bytes) of `extra_files`, as one commit of the run."""
        buffer = io.BytesIO()
        torch.save(state, buffer)
        self.run.commit([(name, buffer.getbuffer()) for name in names] + list(extra_files))
