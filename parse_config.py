"""ConfigParser: the config with CLI overrides applied, its run folders and logging, init_obj / init_ftn."""
import itertools
import json
import logging
import os
import random
from datetime import datetime
from functools import partial
from pathlib import Path

from base.trainer_options import read_trainer_options
from logger import setup_logging
from utils import distributed as dist
from utils import run_folder, run_lock
from utils.config_check import check_typed_section, check_value
from utils.dotted import dotted, key_path
from utils.errors import UserError
from utils.lookup import check_arguments, find_by_name
from utils.overrides import changed_keys, updated_config, with_known_keys
from utils.redact import redact
from utils.run_files import ORIGIN_FILE
from utils.run_folder import LATEST, holds_checkpoints, log_dir_beside, quote, recover, write_text_file
from utils.run_resume import RunStart

LOG_LEVELS = {0: logging.WARNING, 1: logging.INFO, 2: logging.DEBUG}


class ConfigParser:
    def __init__(self, config, resume=None, modification=None, run_id=None, overrides=(),
                 checkpoint=None, continue_run=False):
        """modification: {'section;key': value} from CLI flags (None: not given); overrides: -o texts; run_id:
        default a timestamp, made unique; continue_run: the run goes on (in the checkpoint's folder unless run_id)."""
        self.config = updated_config(config, modification, overrides)
        if not isinstance(self.config.get("name"), str) or not self.config["name"]:
            raise UserError("config: 'name' must be a non-empty string (it names the run folders)")
        if "trainer" not in self.config:
            raise UserError("config has no 'trainer' section; add it with at least 'epochs' (see config.json)")
        self.trainer_options = read_trainer_options(self.config["trainer"])
        self.resume = Path(resume) if resume is not None else None
        self.checkpoint = checkpoint
        self._setup_logging(to_file=False)  # console only until the run folder exists
        if check_value("seed", self.config.get("seed")) is None:
            # no seed given: choose one, record it, and share it so every rank agrees
            self.config["seed"] = dist.broadcast_object(random.SystemRandom().randrange(2**31))
        self.continue_run = continue_run
        self.restart_note = ""  # " (torchrun restart)" when a restarted worker group continues its run
        self.origin = None  # the checkpoint a new run starts from (run.json), so its requeue is known
        self.resume_log = []  # (level, message) about the resume, for the run's info.log
        if checkpoint is not None and not continue_run:  # a new run from a checkpoint: say what its config changes
            changes = changed_keys(checkpoint["config"], self.config) or ["nothing"]
            self.resume_log.append((logging.INFO, f"Config changed from the checkpoint's: {'; '.join(changes)}"))
        self._folder = self.resume.parent if continue_run and run_id is None else None  # -r: the checkpoint's own
        self.run_id = self._folder.name if self._folder is not None else \
            run_id or dist.broadcast_object(datetime.now().strftime(r"%m%d_%H%M%S"))
        self._exact_run_id = run_id is not None or continue_run
        self.run_started, self.made_dirs = False, set()  # made_dirs: the folders init_run created
        self.dry_run = False  # train.py --dry_run: one batch each, no run folder

    @classmethod
    def from_args(cls, args, options=(), argv=None, start=RunStart):
        """Build a ConfigParser from an ArgumentParser (with -c/-r/-d) plus CustomArgs options; `start` decides
        which run and checkpoint (test.py's also takes an exported model)."""
        dests = {}  # each option's target -> its argparse attribute
        for opt in options:
            dests[opt.target] = args.add_argument(*opt.flags, default=None, type=opt.type,
                                                  help=f"sets {dotted(key_path(opt.target))}").dest
        if "--override" not in args._option_string_actions:
            args.add_argument("-o", "--override", action="append", default=[], metavar="KEY.PATH=VALUE",
                              help="set any config value, e.g. -o trainer.epochs=3 (repeatable); "
                                   "+KEY.PATH=VALUE adds a new key")
        args.error = partial(_one_line_error, args)
        parsed = args.parse_args(argv)

        if getattr(parsed, "device", None) is not None:
            os.environ["CUDA_VISIBLE_DEVICES"] = parsed.device
        if parsed.config is None and parsed.resume is None:
            raise UserError("give a config with -c (e.g. -c config.json) or a checkpoint to resume "
                            "with -r (e.g. -r saved/models/<name>/<run>/model_latest.pth)")
        modification = {target: getattr(parsed, dest) for target, dest in dests.items()}
        overrides = with_known_keys(parsed.override or ())
        parser = start(parsed, modification, overrides, getattr(parsed, "run_id", None)).parser(cls)
        parser.dry_run = getattr(parsed, "dry_run", False)
        return parser

    def init_obj(self, name, module, *args, **kwargs):
        """Build `module.<config[name]['type']>(*args, **config[name]['args'], **kwargs)`."""
        target, module_args = self._resolve(name, module, kwargs)
        check_arguments(target, args, module_args, f"{name} ({self[name]['type']})")
        return target(*args, **module_args)

    def init_ftn(self, name, module, *args, **kwargs):
        """Like init_obj, but return a partial to call later."""
        target, module_args = self._resolve(name, module, kwargs)
        return partial(target, *args, **module_args)

    def init_named(self, name, module):
        """`"loss": "nll_loss"` names a function of `module`; a {"type", "args"} section: init_obj or init_ftn."""
        if isinstance(self[name], str):
            return find_by_name(module, self[name], name)
        target, _ = self._resolve(name, module, {})
        return self.init_obj(name, module) if isinstance(target, type) else self.init_ftn(name, module)

    def _resolve(self, name, module, kwargs):
        """(the class or function config[name] names, its config args plus `kwargs`, which may not repeat one)."""
        if name not in self.config:
            raise UserError(f"config has no '{name}' section; add {{\"type\": ..., \"args\": {{...}}}} for it")
        check_typed_section(self.config, name)
        module_args = self[name].get("args", {})
        clash = sorted(set(kwargs) & set(module_args))
        if clash:
            raise UserError(f"config sets {', '.join(f'{name}.args.{k}' for k in clash)}, which the "
                            f"code passes itself; remove it from the config")
        return find_by_name(module, self[name]["type"], f"{name} type"), {**module_args, **kwargs}

    def init_run(self):
        """Make, lock and fill the run folder (rank 0) and log to file. Called once every part is built and the
        checkpoint checked, so that a bad config or checkpoint leaves no folder (a bad batch: finish_run)."""
        problem = None
        if dist.is_main_process():
            try:
                self.made_dirs = run_folder.missing_folders(self.save_dir, self.log_dir)  # what this start makes
                self._make_run_dirs()
            except OSError as err:  # checked by check_save_dir; this catches a classic train.py's run
                problem = UserError(f"cannot create the run folder {self.save_dir}: {err.strerror}; choose "
                                    "another folder with -o trainer.save_dir=PATH")
            except UserError as err:
                problem = err
        problem = dist.broadcast_object(problem)
        if problem is not None:
            raise problem
        if dist.is_main_process():
            self.write_run_file("config.json", self.config)
            if not (self.save_dir / ORIGIN_FILE).is_file():
                write_text_file(self.save_dir / ORIGIN_FILE, json.dumps({"origin": self.origin}) + "\n")
            dist.record_job_run({"folder": str(self.save_dir), "run_id": self.run_id, "seed": self.config["seed"]})
        self._setup_logging(to_file=dist.is_main_process())
        self.get_logger("config").debug(f"Resolved config: {redact(json.dumps(self.config))}",  # pasteable JSON
                                              extra={"once": "config"})  # tune.py: first trial only
        self.run_id = dist.broadcast_object(self.run_id)
        self.run_started = True

    def finish_run(self, failure=None):
        """Let go of the run folder (the process's end would too); a new run that a user error ended before
        its first checkpoint leaves no folder (drop_unsaved_run)."""
        run_folder.drop_unsaved_run(self.made_dirs if self.run_started else (), (self.save_dir, self.log_dir), failure)
        run_lock.release(self.save_dir)

    def use_folder(self, folder):
        """This start continues the run in `folder` (found by --run_id, -r or the torchrun job)."""
        self._folder, self.run_id, self._exact_run_id = Path(folder), Path(folder).name, True

    def check_save_dir(self):
        """Refuse a save_dir that cannot be written, before any data is loaded (no folder is made)."""
        folder = Path(self.trainer_options.save_dir).absolute()
        existing = next(p for p in (folder, *folder.parents) if p.exists())
        if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
            why = "is not a folder" if not existing.is_dir() else "cannot be written (read-only or no permission)"
            raise UserError(f"trainer.save_dir {folder} cannot be used: {existing} {why}; choose another "
                            "folder with -o trainer.save_dir=PATH")

    def _setup_logging(self, to_file):
        setup_logging(self.log_dir if to_file else None, to_file=to_file)
        # other loggers (helpers, libraries) follow trainer.verbosity too, but never below INFO
        level = LOG_LEVELS[self.trainer_options.verbosity] if dist.is_main_process() else logging.WARNING
        logging.getLogger().setLevel(max(level, logging.INFO))

    def write_run_file(self, name, content):
        """Save `content` as JSON in the run folder (rank 0 calls this)."""
        write_text_file(self.save_dir / name, json.dumps(content, indent=4) + "\n")

    def _make_run_dirs(self):
        if self._exact_run_id:  # a named or continued run: its folder, held by this job alone
            self.save_dir.mkdir(parents=True, exist_ok=True)
            run_lock.acquire(self.save_dir)
            recover(self.save_dir)  # a save that a kill interrupted is finished before this run writes
            if self._folder is None and (self.save_dir / "config.json").is_file():  # it was new at our start
                raise UserError(f"run folder {self.save_dir} was just started by another job; run the same "
                                "command again to continue that run, or choose another --run_id")
            if self._folder is None and holds_checkpoints(self.save_dir):  # a run whose config.json is gone
                raise UserError(f"run folder {self.save_dir} holds checkpoints but no config.json; continue it with "
                                f"-r {quote(self.save_dir / LATEST)}, or choose another --run_id")
        else:
            base_id = self.run_id
            for suffix in itertools.count(1):
                try:
                    self.save_dir.mkdir(parents=True)
                    break
                except FileExistsError:  # another run started in the same second
                    self.run_id = f"{base_id}_{suffix}"
            run_lock.acquire(self.save_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)

    def get_logger(self, name, verbosity=None):
        """A logger at `verbosity` (0 warnings, 1 info, 2 debug); default: trainer.verbosity."""
        verbosity = self.trainer_options.verbosity if verbosity is None else verbosity
        if verbosity not in LOG_LEVELS:
            raise UserError(f"verbosity option {verbosity} is invalid; valid options are {sorted(LOG_LEVELS)}")
        logger = logging.getLogger(name)
        logger.setLevel(LOG_LEVELS[verbosity] if dist.is_main_process() else logging.WARNING)
        return logger

    def __getitem__(self, name):
        return self.config[name]

    def __contains__(self, name):
        return name in self.config

    def get(self, name, default=None):
        return self.config.get(name, default)

    @property
    def save_dir(self):
        """saved/models/<name>/<run_id>; a continued run keeps its own folder."""
        if self._folder is not None:
            return self._folder
        return Path(self.trainer_options.save_dir) / "models" / self.config["name"] / self.run_id

    @property
    def log_dir(self):
        """saved/log/<name>/<run_id>, beside the run folder (also when it was copied elsewhere)."""
        return log_dir_beside(self.save_dir, self.config["name"])


def _one_line_error(parser, message):
    """argparse's error, as one line: what is wrong and where to look."""
    parser.exit(2, f"error: {message}; see python {parser.prog} --help\n")
