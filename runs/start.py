"""Which run a start continues, and from which checkpoint: a new run, a named run (--run_id), the
checkpoint's own run (-r), or the run of this worker group's torchrun job (docs/restarts.md)."""
import os
from pathlib import Path

from runs import lock as run_lock
from runs.checks import check_origin, check_own_folder, check_same_run, saved_config
from runs.folder import newest_intact, recover
from utils import distributed as dist
from utils.checkpoint import load_checkpoint
from utils.config_rules import RULES
from utils.errors import UserError
from utils.overrides import merged_config, updated_config

RESTART_WAIT = 60  # seconds a restarted group waits for the old one to let go of the run


def take_run(folder, restart=False):
    """Lock `folder` for this job (rank 0 holds it), then finish a save a kill left there. Every rank calls
    this; a run another job holds is RunBusy on every rank, so none waits in vain."""
    problem = None
    if dist.is_main_process() and Path(folder).is_dir():
        try:
            run_lock.acquire(folder, wait=RESTART_WAIT if restart else 0)
            recover(folder)
        except UserError as err:
            problem = str(err)
    problem = dist.broadcast_object(problem)
    if problem:
        raise run_lock.RunBusy(problem)


def newest_on_any_rank(folder, log):
    """The newest intact checkpoint in `folder` on any rank's disk, sent to every rank: (checkpoint, path).
    What the chosen rank found broken on its way is added to `log` once, on rank 0."""
    broken = []
    checkpoint, path = newest_intact(folder, broken)
    checkpoint, path, notes = _from_best_rank(checkpoint, path, broken)
    if dist.is_main_process():
        log.extend(notes if checkpoint is not None else broken)  # none intact anywhere: rank 0's own notes
    return checkpoint, path


def load_on_any_rank(path):
    """The checkpoint at `path` (-r), read where it exists and sent to every rank; bad or missing: UserError."""
    path, found, problem = Path(path), None, None
    if path.is_file():
        try:
            found = load_checkpoint(path)
        except UserError as err:  # name the newest checkpoint beside it that loads, if another one does
            _, intact = newest_intact(path.parent)
            problem = f"{err}; the newest intact one there is {intact}" if intact not in (None, path) else str(err)
    problems = [p for p in dist.all_gather_object(problem) if p]
    if problems:
        raise UserError(problems[0])
    checkpoint, where, _ = _from_best_rank(found, path)
    if checkpoint is None:
        raise UserError(f"checkpoint {path} does not exist; pass the path of a .pth file under saved/models/ with -r")
    return checkpoint, where


def _from_best_rank(checkpoint, path, notes=()):
    """(checkpoint, path, notes) of the rank holding the most advanced checkpoint, on every rank; Nones if none."""
    reached = (checkpoint["epoch"], checkpoint.get("global_step", 0)) if checkpoint is not None else None
    reports = dist.all_gather_object((reached, str(path)))
    holders = [(prog, -rank) for rank, (prog, _) in enumerate(reports) if prog is not None]
    if not holders:
        return None, None, ()
    source = -max(holders)[1]  # the most advanced checkpoint; on a tie, the lowest rank
    checkpoint, notes = dist.broadcast_object((checkpoint, notes), src=source)
    return checkpoint, Path(reports[source][1]), notes


class RunStart:
    """From the command line to the run this start is: `parser(cls)` builds the ConfigParser for it."""

    def __init__(self, parsed, modification, overrides, run_id):
        from utils.util import read_json  # utils.util imports torch-heavy helpers; keep this module light

        self.given = read_json(parsed.config) if parsed.config is not None else None
        self.resume = Path(parsed.resume) if parsed.resume is not None else None
        self.modification, self.overrides, self.run_id = modification, overrides, run_id
        self.restart = False
        self.log = []  # (level, message) for the run's info.log

    def parser(self, cls):
        job = dist.job_run()
        if job is None:
            return self._first_start(cls)
        # a group torchrun restarted: the run its job started, from that run's newest checkpoint
        self.restart = True
        folder = Path(job["folder"])
        take_run(folder, restart=True)
        checkpoint, path = newest_on_any_rank(folder, self.log)
        if checkpoint is not None:
            parser = cls(checkpoint["config"], path, self.modification, job["run_id"], self.overrides, checkpoint,
                         continue_run=True)
        else:  # killed before its first checkpoint: the same start again, in the same folder, with the same seed
            parser = self._first_start(cls)
            parser.config["seed"] = job["seed"]
        parser.restart_note = f" (torchrun restart {os.environ.get('TORCHELASTIC_RESTART_COUNT', '?')})"
        return self._finish(parser, folder)

    def _first_start(self, cls):
        if self.run_id is not None:
            return self._named(cls)
        if self.resume is None:
            return cls(self.given, None, self.modification, None, self.overrides)
        return self._from_checkpoint(cls, None)

    def _from_checkpoint(self, cls, run_id):
        checkpoint, path = load_on_any_rank(self.resume)  # -r alone: its run is locked when training starts
        fine_tune = self.given is not None  # the file's keys replace the checkpoint's, key by key
        if not fine_tune and run_id is None:
            check_own_folder(path, checkpoint)
        parser = cls(merged_config(checkpoint["config"], self.given or {}), path, self.modification, run_id,
                     self.overrides, checkpoint, continue_run=not fine_tune)
        if run_id is not None or fine_tune:  # a new run that starts from another's checkpoint
            parser.origin = str(path.resolve())
        return self._finish(parser)

    def _named(self, cls):
        """--run_id NAME: a new run of that name, or the run NAME continued (a requeue) from its newest checkpoint."""
        resolved = updated_config(self._named_base(), self.modification, self.overrides)  # the overrides, once
        folder = _run_folder(resolved, self.run_id)
        saved = saved_config(folder) if folder is not None else None
        if saved is None:  # a new named run
            return self._from_checkpoint(cls, self.run_id) if self.resume else \
                self._finish(cls(resolved, None, None, self.run_id))
        take_run(folder, self.restart)
        if self.resume is not None:
            check_origin(folder, self.resume)
        # with -r too: the run's own checkpoint with an -o or --lr change would be another experiment
        check_same_run(resolved, saved, folder)
        checkpoint, path = newest_on_any_rank(folder, self.log)
        if checkpoint is None:  # killed before its first checkpoint: start it again, with the seed it drew
            parser = self._from_checkpoint(cls, self.run_id) if self.resume else cls(resolved, None, None, self.run_id)
            parser.config["seed"] = saved["seed"]
            return self._finish(parser, folder)
        config = {**merged_config(checkpoint["config"], self.given or {}), "seed": saved["seed"]}
        parser = cls(config, path, self.modification, self.run_id, self.overrides, checkpoint, continue_run=True)
        return self._finish(parser, folder)

    def _named_base(self):
        """The config that names the run: -c's, over -r's checkpoint's config key by key. The requeue of a run
        started from another run's checkpoint that is gone since (keep_last, a clean-up) finds its run beside
        that one and goes on with the run's own config; check_origin then confirms it started there."""
        if self.resume is None:
            return self.given
        if not dist.any_rank(self.resume.is_file()):
            own = saved_config(self.resume.parent.parent / self.run_id)  # <save_dir>/models/<name>/<run_id>
            if own is not None:
                return merged_config(own, self.given or {})
        return merged_config(load_on_any_rank(self.resume)[0]["config"], self.given or {})

    def _finish(self, parser, folder=None):
        if folder is not None:
            parser.use_folder(folder)
        parser.resume_log.extend(self.log)
        return parser


def _run_folder(config, run_id):
    trainer = config.get("trainer") if isinstance(config.get("trainer"), dict) else {}
    if not isinstance(config.get("name"), str):
        return None  # the ConfigParser reports it
    return Path(str(trainer.get("save_dir", RULES["trainer.save_dir"].default))) / "models" / config["name"] / run_id
