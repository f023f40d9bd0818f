"""Weights & Biases: offline unless the config says "mode": "online"; one W&B run per run folder.

args: mode ("offline" default, "online"), project (default: config name), entity, tags (a
list), and any other wandb.init keyword. Only this module imports wandb, and only when
"wandb" is listed. Offline runs land in <log_dir>/wandb/offline-run-*; each start of the run
(a resume, a requeue, a restart) adds one such folder, all with the same run id, which
`wandb sync` uploads into that one W&B run.
"""
import secrets
import string
from pathlib import Path

from utils.config.dotted import flatten

ID_CHARS = string.ascii_lowercase + string.digits


class WandbTracker:
    def __init__(self, args):
        self.args = dict(args)
        self.mode = self.args.pop("mode", "offline")
        if self.mode not in ("offline", "online"):
            raise ValueError(f"wandb mode must be \"offline\" or \"online\", got {self.mode!r}")
        self.run, self.step = None, 0

    def connect(self, save_root, experiment):
        import wandb  # noqa: F401  (importing is the check: a missing package is a warning at start)
        self.project = self.args.pop("project", None) or experiment

    def open(self, run, saved):
        """The id is chosen once per run folder and saved before W&B sees it: every start of the run,
        and `wandb sync` of its offline folders, then name the same W&B run."""
        import wandb
        run_id = (saved or {}).get("id") or _new_id(run.run_id)
        if not saved:
            run.save_ids({**run.saved_ids(), "wandb": {"id": run_id}})
        # W&B tags are short labels (64 characters at most): the full run folder and commit go in the config
        tags = [f"{k}:{v}"[:64] for k, v in run.tags.items() if v and k != "run_folder"]
        config = {**flatten(run.config), **{f"run.{k}": v for k, v in run.tags.items()}}
        self.run = wandb.init(id=run_id, resume="allow", mode=self.mode, project=self.project,
                              dir=str(run.log_dir), name=run.run_id, config=config,
                              tags=self.args.pop("tags", tags), **self.args,
                              settings=wandb.Settings(silent=True, x_disable_stats=True))
        return {"id": run_id}

    def log_scalars(self, scalars, step):
        # W&B's step must only grow: the trainer's global step does across resumes; epoch values
        # (logged with their epoch as step) go at the global step where their epoch ended
        self.step = max(self.step, step)
        self.run.log(dict(scalars), step=self.step)

    def end_epoch(self, epoch, log, best):
        self.run.log({"epoch": epoch}, step=self.step)
        if best.get("metric") is not None:
            self.run.summary.update({f"best_{best['metric']}": best["value"], "best_epoch": best["epoch"]})
        if best.get("checkpoint"):
            self.run.summary["best_checkpoint"] = best["checkpoint"]

    def flush(self):
        pass  # W&B writes in its own process

    def finish(self, status):
        self.folder = Path(self.run.dir).parent  # offline-run-<time>-<id>: this start's files
        self.url = None if self.mode == "offline" else self.run.url
        if status == "PRUNED":  # as in MLflow: finished, and said to be pruned
            self.run.summary["pruned"] = True
        self.run.finish(exit_code={"FINISHED": 0, "PRUNED": 0, "KILLED": 143}.get(status, 1))

    def where(self):
        if self.url:
            return [f"W&B: {self.url}"]
        return [f"W&B: offline run in {self.folder}", f"  upload: wandb sync {self.folder}"]


def _new_id(run_name):
    """<run folder name>-<8 random characters>: readable, and unique in a W&B project."""
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in run_name)[:40]
    return f"{safe}-{''.join(secrets.choice(ID_CHARS) for _ in range(8))}"
