"""ConfigParser: the config with CLI overrides applied, logging, init_obj / init_ftn; the run it names."""
import json
import logging
import os
import random
from functools import partial
from pathlib import Path

from logger import setup_logging
from runs.files import LATEST
from runs.run import Run
from runs.start import StartPlan, StartRequest, decide_start
from utils import distributed as dist
from utils.config.check import check_typed_section, check_value
from utils.config.dotted import dotted, key_path
from utils.config.overrides import updated_config, with_known_keys
from utils.config.trainer_options import read_trainer_options
from utils.errors import UserError
from utils.lookup import check_arguments, find_by_name
from utils.redact import redact
from utils.util import read_json

LOG_LEVELS = {0: logging.WARNING, 1: logging.INFO, 2: logging.DEBUG}


class ConfigParser:
    """The classic's job: the config with CLI changes applied, logging, and building parts by name. The run
    folder it names belongs to `run` (runs/run.py); `save_dir` and `log_dir` are views of it."""

    def __init__(self, config, resume=None, modification=None, run_id=None, overrides=(), plan=None):
        """modification: {'section;key': value} from CLI flags (None: not given); overrides: -o texts; run_id:
        the run's name, default a timestamp. `plan`: what from_args decided (runs/start.py); without one, a new
        run of `config`."""
        self.config = updated_config(config, modification, overrides)
        self.trainer_options = run_options(self.config)
        self.resume = Path(resume) if resume is not None else None
        self._setup_logging(to_file=False)  # console only until the run folder exists
        if check_value("seed", self.config.get("seed")) is None:
            # no seed given: choose one, record it, and share it so every rank agrees
            self.config["seed"] = dist.broadcast_object(random.SystemRandom().randrange(2**31))
        plan = plan or StartPlan(self.config, self.resume, run_id=run_id)
        self.run = Run(plan, self.config["name"], self.trainer_options.save_dir)
        self.cli_args = None  # from_args: the parsed command line, for an entry's own flags (test.py --raw)

    @classmethod
    def from_args(cls, args, options=(), argv=None, start=decide_start):
        """Build a ConfigParser from an ArgumentParser (with -c/-r/-d) plus CustomArgs options; `start` decides
        which run and checkpoint (test.py's also takes an exported model). Reads files; writes none."""
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
                            f"with -r (e.g. -r saved/models/<name>/<run>/{LATEST})")
        request = StartRequest(read_json(parsed.config) if parsed.config is not None else None,
                               Path(parsed.resume) if parsed.resume is not None else None,
                               {target: getattr(parsed, dest) for target, dest in dests.items()},
                               with_known_keys(parsed.override or ()),
                               getattr(parsed, "run_id", None))
        plan = start(request)
        parser = cls(plan.config, plan.resume, plan=plan)
        parser.cli_args = parsed
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
        """Open the run (its folder, lock, config.json) and log to its info.log, then write the lines held
        for it. Called once every part is built and the checkpoint checked, so that a bad config or
        checkpoint leaves no folder (a bad batch: the run's close removes it)."""
        self.run.open(self.config)
        self._setup_logging(to_file=dist.is_main_process())
        logger = self.get_logger("trainer")
        for level, message in self.run.notes:
            logger.log(level, message)
        self.run.notes.clear()
        self.get_logger("config").debug(f"Resolved config: {redact(json.dumps(self.config))}",  # pasteable JSON
                                        extra={"once": "config"})  # tune.py: first trial only

    def check_save_dir(self):
        """Refuse a save_dir that cannot be written, before any data is loaded (no folder is made)."""
        folder = Path(self.trainer_options.save_dir).absolute()
        existing = next(p for p in (folder, *folder.parents) if p.exists())
        if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
            why = "is not a folder" if not existing.is_dir() else "cannot be written (read-only or no permission)"
            raise UserError(f"trainer.save_dir {folder} cannot be used: {existing} {why}; choose another "
                            "folder with -o trainer.save_dir=PATH")

    def _setup_logging(self, to_file):
        if to_file:  # a full disk on info.log names the command that continues this run (tune.py's for a trial)
            setup_logging(self.log_dir, full_disk_hint=f"free space, then resume with {self.run.resume_command()}")
        else:
            setup_logging(None, to_file=False)
        # other loggers (helpers, libraries) follow trainer.verbosity too, but never below INFO
        level = LOG_LEVELS[self.trainer_options.verbosity] if dist.is_main_process() else logging.WARNING
        logging.getLogger().setLevel(max(level, logging.INFO))

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
        return self.run.folder

    @property
    def log_dir(self):
        """saved/log/<name>/<run_id>, beside the run folder."""
        return self.run.log_dir

    @property
    def dry_run(self):
        """train.py --dry_run: one batch each, no run folder."""
        return bool(getattr(self.cli_args, "dry_run", False))

    @property
    def run_id(self):
        return self.run.run_id


def run_options(config):
    """The trainer options of a config that can name a run (a name and a trainer section), checked."""
    if not isinstance(config.get("name"), str) or not config["name"]:
        raise UserError("config: 'name' must be a non-empty string (it names the run folders)")
    if "trainer" not in config:
        raise UserError("config has no 'trainer' section; add it with at least 'epochs' (see config.json)")
    return read_trainer_options(config["trainer"])


def _one_line_error(parser, message):
    """argparse's error, as one line: what is wrong and where to look."""
    parser.exit(2, f"error: {message}; see python {parser.prog} --help\n")
