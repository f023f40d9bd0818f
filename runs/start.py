"""Which run a start continues, and from which checkpoint: a new run, a named run (--run_id), the
checkpoint's own run (-r), or the run of this worker group's torchrun job (docs/restarts.md).

`decide_start` only reads (every rank calls it; ranks agree through collectives): it returns a StartPlan and
changes nothing. The run object (runs/run.py) takes the lock and makes folders when training starts.
"""
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from runs.checkpoint_file import load_checkpoint
from runs.checks import check_origin, check_own_folder, check_same_run, saved_config
from runs.files import run_folder
from runs.folder import newest_intact
from utils import distributed as dist
from utils.config.overrides import changed_keys, merged_config, updated_config
from utils.config.trainer_options import read_trainer_options
from utils.errors import UserError


@dataclass
class StartRequest:
    """What the command line asks for: -c's config (None: none), -r's path, flag and -o changes, --run_id."""
    given: dict | None = None
    resume: Path | None = None
    modification: dict | None = None
    overrides: tuple = ()
    run_id: str | None = None


@dataclass
class StartPlan:
    """What a start trains: the config, the checkpoint it continues from (None: from scratch), and the run."""
    config: dict
    resume: Path | None = None  # the checkpoint's path (config.resume)
    checkpoint: dict | None = None
    continue_run: bool = False  # the checkpoint's own run goes on (False: a new run, fine-tuned from it)
    folder: Path | None = None  # the existing run folder it continues (None: computed from the config)
    run_id: str | None = None  # the run's exact name (--run_id, or the continued folder's); None: a timestamp
    origin: str | None = None  # the checkpoint a new run starts from (run.json), so its requeue is known
    named: bool = False  # found by --run_id: a torchrun restart finds it by its name, no job record needed
    restart: str | None = None  # torchrun's restart count when a restarted worker group continues its run
    notes: list = field(default_factory=list)  # (level, message) for the run's info.log

    @property
    def exact(self):
        """A named or continued run: its folder is this one, not a fresh timestamp."""
        return self.run_id is not None or self.folder is not None


def decide_start(request):
    """The StartPlan for `request`: a torchrun restart continues its job's run; else --run_id, -r, or -c alone."""
    job = dist.job_run()
    if job is not None:
        return _restarted(request, job)
    if request.run_id is not None:
        return _named(request)
    if request.resume is None:
        return StartPlan(updated_config(request.given, request.modification, request.overrides))
    return _from_checkpoint(request, None)


def _restarted(request, job):
    """A group torchrun restarted: the run its job started, from that run's newest checkpoint."""
    folder, notes = Path(job["folder"]), []
    checkpoint, path = newest_on_any_rank(folder, notes)
    restart = os.environ.get("TORCHELASTIC_RESTART_COUNT", "?")
    if checkpoint is None:  # killed before its first checkpoint: the same start again, with the same seed
        first = _named(request) if request.run_id is not None else (
            _from_checkpoint(request, None) if request.resume is not None else
            StartPlan(updated_config(request.given, request.modification, request.overrides)))
        first.config["seed"] = job["seed"]
        first.folder, first.run_id, first.restart = folder, folder.name, restart
        first.notes += notes
        return first
    config = updated_config(checkpoint["config"], request.modification, request.overrides)
    return StartPlan(config, path, checkpoint, continue_run=True, folder=folder, run_id=folder.name,
                     restart=restart, notes=notes)


def _from_checkpoint(request, run_id):
    """-r FILE: its own run goes on (in FILE's folder); with -c (fine-tuning) or --run_id, a new run from it."""
    checkpoint, path = load_on_any_rank(request.resume)
    fine_tune = request.given is not None  # the file's keys replace the checkpoint's, key by key
    config = updated_config(merged_config(checkpoint["config"], request.given or {}), request.modification,
                            request.overrides)
    if not fine_tune and run_id is None:
        check_own_folder(path, checkpoint)
        return StartPlan(config, path, checkpoint, continue_run=True, folder=path.parent, run_id=path.parent.name)
    # a new run that starts from another's checkpoint: with -c, a fine-tune; with --run_id alone, its continuation
    changes = "; ".join(changed_keys(checkpoint["config"], config) or ["nothing"])
    notes = [(logging.INFO, f"Config changed from the checkpoint's: {changes}")] if fine_tune else []
    return StartPlan(config, path, checkpoint, continue_run=not fine_tune, run_id=run_id, named=run_id is not None,
                     origin=str(path.resolve()), notes=notes)


def _named(request):
    """--run_id NAME: a new run of that name, or the run NAME continued (a requeue) from its newest checkpoint."""
    resolved = updated_config(_named_base(request), request.modification, request.overrides)
    folder = _run_folder(resolved, request.run_id)
    saved = saved_config(folder) if folder is not None else None
    if saved is None:  # a new named run
        return _from_checkpoint(request, request.run_id) if request.resume else \
            StartPlan(resolved, run_id=request.run_id, named=True)
    if request.resume is not None:
        check_origin(folder, request.resume)
    # with -r too: the run's own checkpoint with an -o or --lr change would be another experiment
    check_same_run(resolved, saved, folder)
    notes = []
    checkpoint, path = newest_on_any_rank(folder, notes)
    if checkpoint is None:  # killed before its first checkpoint: start it again, with the seed it drew
        plan = _from_checkpoint(request, request.run_id) if request.resume else StartPlan(resolved)
        plan.config["seed"] = saved["seed"]
        plan.folder, plan.run_id, plan.named, plan.notes = folder, request.run_id, True, plan.notes + notes
        return plan
    base = {**merged_config(checkpoint["config"], request.given or {}), "seed": saved["seed"]}
    config = updated_config(base, request.modification, request.overrides)
    return StartPlan(config, path, checkpoint, continue_run=True, folder=folder, run_id=request.run_id, named=True,
                     notes=notes)


def _named_base(request):
    """The config that names the run: -c's, over -r's checkpoint's config key by key. The requeue of a run
    started from another run's checkpoint that is gone since (keep_last, a clean-up) finds its run beside
    that one and goes on with the run's own config; check_origin then confirms it started there."""
    if request.resume is None:
        return request.given
    if not dist.any_rank(request.resume.is_file()):
        own = saved_config(request.resume.parent.parent / request.run_id)  # a sibling run folder
        if own is not None:
            return merged_config(own, request.given or {})
    return merged_config(load_on_any_rank(request.resume)[0]["config"], request.given or {})


def _run_folder(config, run_id):
    """The folder of the run named `run_id`, with trainer.save_dir read as every other start reads it."""
    if not isinstance(config.get("name"), str) or not isinstance(config.get("trainer"), dict):
        return None  # the ConfigParser reports it
    return run_folder(read_trainer_options(config["trainer"]).save_dir, config["name"], run_id)


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
            found = load_checkpoint(path, full=False)  # as saved: small, sent to every rank
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
