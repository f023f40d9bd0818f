"""What a tracker needs to know about the run it records, and the tracker runs it already has.

The tracker run ids live in the run folder (written by the run, atomically), so a
resume with -r, a --run_id requeue or a torchrun restart, which all continue in the same
folder, continue the same tracker runs; a new run folder starts new ones.
"""
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from utils.signals import TrainingInterrupted


@dataclass
class RunInfo:
    name: str  # the experiment: config "name"
    run_id: str  # the run folder's name
    save_dir: Path  # checkpoints, config.json, metrics.csv
    log_dir: Path  # info.log, TensorBoard events
    config: dict
    world_size: int = 1
    git_commit: str = ""
    extra_tags: dict = field(default_factory=dict)
    ids_file: Path | None = None  # where the tracker run ids of this run are kept (None: nowhere)
    write_ids: Callable | None = None  # writes them there, as the run's owner
    artifacts: list = field(default_factory=list)  # the run's files a tracker keeps a copy of
    run_uid: str | None = None  # made with the run folder (run.json): a folder deleted and made again is a new run

    @property
    def tags(self):
        """What identifies the run in any tracker's UI."""
        return {"run_folder": str(Path(self.save_dir).absolute()), "run_id": self.run_id,
                "git_commit": self.git_commit, "world_size": str(self.world_size),
                **({"run_uid": self.run_uid} if self.run_uid else {}), **self.extra_tags}

    def saved_ids(self):
        """{tracker name: what it stored} from an earlier start of this run; {} for a new run."""
        try:
            return json.loads(Path(self.ids_file).read_text())
        except (OSError, ValueError, TypeError):
            return {}

    def save_ids(self, ids):
        if self.write_ids is not None:
            self.write_ids(ids)


def run_status(error):
    """How the run ended, given the exception on its way out (None: it finished): FINISHED, KILLED, FAILED, or
    what the exception says of itself (`run_end`: tune.py's pruned trial says PRUNED)."""
    if error is None:
        return "FINISHED"
    if getattr(error, "run_end", None):
        return error.run_end
    if isinstance(error, (TrainingInterrupted, KeyboardInterrupt)):
        return "KILLED"
    return "FAILED"
