"""Run: one run folder, owned by one job. Its path (one formula), the lock (taken in `open`, released in
`close`), every file it writes (through the owner check and the commit journal), and the log lines held
until its info.log exists. docs/restarts.md says what a run promises."""
import itertools
import json
from datetime import datetime
from pathlib import Path

from runs import lock as run_lock
from runs.files import LATEST, ORIGIN_FILE, RUN_CONFIG, RUN_UID, log_dir_beside, run_folder
from runs.folder import drop_unsaved_run, holds_checkpoints, missing_folders, quote, resume_command
from runs.identity import folder_uid, new_uid, run_record
from runs.journal import as_recovered, recover, write_files
from runs.shard_folders import drop_unreferenced, shards_of, with_full_parts
from runs.start import StartPlan
from utils import distributed as dist
from utils.errors import UserError

RESTART_WAIT = 60  # seconds a restarted group waits for the old one to let go of the run


class Run:
    """The run a StartPlan describes, in `<save_dir>/models/<name>/<run_id>` (or the folder it continues)."""

    def __init__(self, plan, name, save_dir):
        self.plan = plan
        self.name = name
        # no name given: a timestamp, the same on every rank (a second run in the same second gets a suffix)
        self.run_id = plan.run_id or dist.broadcast_object(datetime.now().strftime(r"%m%d_%H%M%S"))
        self.folder = Path(plan.folder) if plan.folder is not None else run_folder(save_dir, name, self.run_id)
        self.notes = list(plan.notes)  # (level, message) for info.log, written once it exists
        self.about = {}  # what an entry point adds to provenance.json (tune.py: the trial and its study)
        self.rerun = None  # the command that continues this run when not train.py -r (tune.py: the search's own)
        self.opened = False
        self._full = None  # the checkpoint in the single-file format, once read
        self.uid = None  # the run's identity (run.json's run_uid), known once `open` has read or made it
        self._made = set()  # the folders `open` created, which `close` removes after a config error
        self._seen = _stamp(self.folder) if plan.folder is not None and dist.is_main_process() else None

    @classmethod
    def new(cls, config, save_dir, run_id=None):
        """A run for a config built in code (no command line): new, named `run_id` or a timestamp."""
        return cls(StartPlan(config, run_id=run_id), config["name"], save_dir)

    @property
    def checkpoint(self):
        """The checkpoint this start continues or fine-tunes from (a dict) in the single-file format, or None:
        a sharded checkpoint is read whole here, in this process, once (test.py, export.py, a plain model)."""
        if self._full is None and self.plan.checkpoint is not None:
            sharded = shards_of(self.plan.checkpoint) is not None
            self._full = with_full_parts(self.plan.checkpoint, self.plan.resume) if sharded else self.plan.checkpoint
        return self._full

    @property
    def saved_checkpoint(self):
        """The checkpoint as its .pth holds it (a sharded one names its shard folder): what the trainer's
        checkpointer loads, each rank its own slices under a sharded model."""
        return self.plan.checkpoint

    @property
    def log_dir(self):
        """saved/log/<name>/<run_id>, beside the run folder (also when it was copied elsewhere)."""
        return log_dir_beside(self.folder, self.name)

    def note(self, level, message):
        """A line for the run's info.log; held until `open` has made it."""
        self.notes.append((level, message))

    def check_free(self):
        """Refuse a run another live job holds (or one no job can lock) before anything is built: its lock is
        looked at, not taken (`open` takes it). A restarted torchrun group waits in `open` for the old one."""
        problem = None
        if dist.is_main_process() and self.plan.folder is not None and self.plan.restart is None:
            try:
                run_lock.check_free(self.folder)
            except UserError as err:
                problem = err
        problem = dist.broadcast_object(problem)
        if problem is not None:
            raise problem

    # ---- open and close -------------------------------------------------------
    def open(self, config):
        """Make and lock the folder (rank 0), finish a save a kill interrupted, and write config.json and
        run.json. Every rank calls it; a problem is the same UserError on every rank."""
        problem = None
        if dist.is_main_process():
            try:
                self._made = missing_folders(self.folder, self.log_dir)
                self._take_folder()
                self.log_dir.mkdir(parents=True, exist_ok=True)
            except OSError as err:  # checked by check_save_dir; this catches a classic train.py's run
                problem = UserError(f"cannot create the run folder {self.folder}: {err.strerror}; choose "
                                    "another folder with -o trainer.save_dir=PATH")
            except UserError as err:
                problem = err
        problem = dist.broadcast_object(problem)
        if problem is not None:
            raise problem
        self.run_id = dist.broadcast_object(self.run_id)
        self.folder = Path(dist.broadcast_object(str(self.folder)))
        if dist.is_main_process():
            self.write_json(RUN_CONFIG, config)
            self.uid = self._own_identity()
            if not self.plan.named:  # a torchrun restart of this job finds an unnamed run by this record
                dist.record_job_run({"folder": str(self.folder), "run_id": self.run_id, "seed": config["seed"]})
        self.uid = dist.broadcast_object(self.uid)
        self.opened = True

    def _own_identity(self):
        """The run's run_uid (runs/identity.py): run.json's, or one written there now. A run made before run_uid
        existed gets one; a checkpoint continued in its own folder (-r, also a copy in a folder of its own) brings
        its run's, so the files it holds stay that run's."""
        record = run_record(self.folder)
        if folder_uid(self.folder) is None:
            plan, brought = self.plan, None
            if plan.continue_run and plan.resume is not None and Path(plan.resume).parent == self.folder:
                brought = plan.checkpoint.get(RUN_UID)
            origin = record.get("origin") if "origin" in record else self.plan.origin
            record = {"origin": origin, RUN_UID: brought or new_uid()}
            self.write_json(ORIGIN_FILE, record)
        return record[RUN_UID]

    def close(self, failure=None):
        """Let go of the folder (the process's end would too); a new run that a user error ended before its
        first checkpoint leaves no folder."""
        if dist.is_main_process():
            drop_unsaved_run(self._made if self.opened else (), (self.folder, self.log_dir), failure)
            run_lock.release(self.folder)

    def _take_folder(self):
        if not self.plan.exact:  # a new timestamped run: a folder of its own
            base_id = self.run_id
            for suffix in itertools.count(1):
                try:
                    self.folder.mkdir(parents=True)
                    break
                except FileExistsError:  # another run started in the same second
                    self.run_id = f"{base_id}_{suffix}"
                    self.folder = self.folder.with_name(self.run_id)
            run_lock.acquire(self.folder)
            return
        # a named or continued run: its folder, held by this job alone
        self.folder.mkdir(parents=True, exist_ok=True)
        run_lock.acquire(self.folder, wait=RESTART_WAIT if self.plan.restart is not None else 0)
        recover(self.folder)  # a save that a kill interrupted is finished before this run writes
        drop_unreferenced(self.folder)  # shard folders of a save cut before its commit, or of removed checkpoints
        if self.plan.folder is None and (self.folder / RUN_CONFIG).is_file():  # it was new when we looked
            raise UserError(f"run folder {self.folder} was just started by another job; run the same "
                            "command again to continue that run, or choose another --run_id")
        if self.plan.folder is None and holds_checkpoints(self.folder):  # a run whose config.json is gone
            raise UserError(f"run folder {self.folder} holds checkpoints but no {RUN_CONFIG}; continue it with "
                            f"-r {quote(self.folder / LATEST)}, or choose another --run_id")
        if self._seen is not None and _stamp(self.folder) != self._seen:
            raise run_lock.RunBusy(f"run folder {self.folder} was saved into by another job while this one "
                                   "started; run the same command again to continue from its newest checkpoint")

    # ---- files ----------------------------------------------------------------
    def write_json(self, name, content):
        """A small file of the run (config.json, run.json, provenance.json, trackers.json) as JSON, atomically;
        only while this job holds the run (rank 0 calls it)."""
        self.commit([(name, (json.dumps(content, indent=4) + "\n").encode("utf-8"))])

    def commit(self, files):
        """Replace each (name, bytes) of `files` in the folder, all or none; only its owner writes."""
        if dist.is_main_process() and not run_lock.held_here(self.folder):
            raise run_lock.RunBusy(f"this job does not hold run folder {self.folder} (its run ended or never "
                                   "started here), so it writes nothing there; run the command again to continue it")
        write_files(self.folder, files, hint=f"free space, then resume with {self.resume_command()}")

    def resume_command(self, *more):
        """What a person runs to continue this run: train.py -r, or the command of the search it is a trial of."""
        return self.rerun or resume_command(self.folder, *more)


def _stamp(folder):
    """What changes when a save commits: model_latest.pth's identity (every save writes it), or None. A save
    whose journal is written counts as done (a rename keeps the file's identity)."""
    try:
        found = as_recovered(folder).get(LATEST, Path(folder) / LATEST).stat()
    except OSError:
        return None
    return found.st_ino, found.st_size, found.st_mtime_ns


def write_while_free(folder, name, content):
    """`content` as JSON under `name` in `folder` (test.py's results beside a checkpoint), written under the
    folder's lock and only while no job holds it, so nothing writes into a run another job owns. Returns None,
    or why nothing was written (one line)."""
    try:
        run_lock.acquire(folder)
    except run_lock.RunBusy as err:
        return str(err).partition(";")[0]  # what holds it, without the advice to a trainer
    except UserError:  # no lock file can be made there (a read-only disk): no job owns it; the write says why
        pass
    try:
        write_files(folder, [(name, (json.dumps(content, indent=4) + "\n").encode("utf-8"))],
                    hint="free space, then run test.py again")
    finally:
        run_lock.release(folder)
    return None
