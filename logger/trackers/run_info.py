"""What a tracker needs to know about the run it records, and the tracker runs it already has.

The tracker run ids live in the run folder (trackers.json, written atomically), so a
resume with -r, a --run_id requeue or a torchrun restart, which all continue in the same
folder, continue the same tracker runs; a new run folder starts new ones.
"""
import json
from dataclasses import dataclass, field
from pathlib import Path

from utils.redact import redact_all
from utils.signals import TrainingInterrupted
from utils.util import write_json

IDS_FILE = "trackers.json"


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

    @classmethod
    def of_run(cls, config, world_size, git=None):
        """The RunInfo of the run a ConfigParser owns (git: provenance.json's record, read once per start); a
        search trial is tagged with its study and number."""
        search = config.get("tune") if isinstance(config.get("tune"), dict) else {}
        # trackers store the config as parameters: a password in a URL is shown as *** there
        return cls(config["name"], config.run_id, config.save_dir, config.log_dir, redact_all(config.config),
                   world_size, (git or {}).get("commit", ""),
                   {f"tune_{key}": str(search[key]) for key in ("study", "trial") if key in search})

    @property
    def tags(self):
        """What identifies the run in any tracker's UI."""
        return {"run_folder": str(Path(self.save_dir).absolute()), "run_id": self.run_id,
                "git_commit": self.git_commit, "world_size": str(self.world_size), **self.extra_tags}

    def saved_ids(self):
        """{tracker name: what it stored} from an earlier start of this run; {} for a new run."""
        path = Path(self.save_dir) / IDS_FILE
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return {}

    def save_ids(self, ids):
        write_json(ids, Path(self.save_dir) / IDS_FILE)


def run_status(error):
    """How the run ended, given the exception on its way out (None: it finished)."""
    if error is None:
        return "FINISHED"
    if isinstance(error, (TrainingInterrupted, KeyboardInterrupt)):
        return "KILLED"
    return "FAILED"
