"""ConfigParser: read the config, apply CLI overrides, own the run folders and logging,
and build the configured parts by name (init_obj / init_ftn)."""
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
from utils.config_check import check_typed_section
from utils.errors import UserError
from utils.lookup import check_arguments, find_by_name
from utils.overrides import updated_config
from utils.run_resume import (
    check_same_run,
    elastic_marker,
    elastic_run_id,
    load_from_any_rank,
    newest_checkpoint,
)
from utils.util import read_json, write_json

LOG_LEVELS = {0: logging.WARNING, 1: logging.INFO, 2: logging.DEBUG}


class ConfigParser:
    def __init__(self, config, resume=None, modification=None, run_id=None, overrides=(),
                 checkpoint=None, continue_run=False):
        """
        config: dict of the experiment (see config.json); resume: path of the checkpoint resumed;
        modification: {'section;key;...': value} from registered CLI flags (None values skipped);
        run_id: the run folder's name (default: a timestamp, made unique when taken);
        overrides: ['key.path=value', '+new.key=value'] from -o; checkpoint: the one at `resume`;
        continue_run: the same run goes on (in the checkpoint's own folder unless run_id names one).
        """
        self._config = updated_config(config, modification, overrides)
        if not isinstance(self._config.get("name"), str) or not self._config["name"]:
            raise UserError("config: 'name' must be a non-empty string (it names the run folders)")
        if "trainer" not in self._config:
            raise UserError("config has no 'trainer' section; add it with at least 'epochs' (see config.json)")
        self.trainer_options = read_trainer_options(self._config["trainer"])
        self.resume = Path(resume) if resume is not None else None
        self.checkpoint = checkpoint
        self._setup_logging(to_file=False)  # console only until the run folder exists
        seed = self._config.get("seed")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
            raise UserError(f"config: seed must be an integer or null, got {seed!r}")
        if seed is None:
            # no seed given: choose one, record it, and share it so every rank agrees
            self._config["seed"] = dist.broadcast_object(random.SystemRandom().randrange(2**31))
        self.continue_run = continue_run
        self.restart_note = ""
        self._in_checkpoint_folder = continue_run and run_id is None  # -r: the checkpoint's own folder
        if self._in_checkpoint_folder:
            self._run_id = self.resume.parent.name
        else:
            self._run_id = run_id or dist.broadcast_object(datetime.now().strftime(r"%m%d_%H%M%S"))
        self._exact_run_id = run_id is not None or continue_run
        self.run_started = False

    @classmethod
    def from_args(cls, args, options=(), argv=None):
        """Build a ConfigParser from an ArgumentParser (with -c/-r/-d) plus CustomArgs options."""
        for opt in options:
            args.add_argument(*opt.flags, default=None, type=opt.type, help=f"sets {opt.target}")
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
        modification = {opt.target: getattr(parsed, _get_opt_name(opt.flags)) for opt in options}
        overrides = parsed.override or ()
        given = read_json(parsed.config) if parsed.config is not None else None
        run_id = getattr(parsed, "run_id", None)
        if parsed.resume is not None:
            checkpoint, resume = load_from_any_rank(Path(parsed.resume), required=True)
            if given is not None:
                # fine-tuning, as in the classic: the checkpoint's config, the file's sections replacing its own
                return cls({**checkpoint["config"], **given}, resume, modification, run_id, overrides, checkpoint)
            return cls(checkpoint["config"], resume, modification, run_id, overrides, checkpoint, continue_run=True)
        return cls._named_or_new_run(given, modification, overrides, run_id)

    @classmethod
    def _named_or_new_run(cls, given, modification, overrides, run_id):
        """--run_id NAME, or the run of a restarted torchrun worker group, continues where it stopped."""
        config = updated_config(given, modification, overrides)
        trainer = config.get("trainer") if isinstance(config.get("trainer"), dict) else {}
        save_root, name = Path(str(trainer.get("save_dir", "saved/"))), str(config.get("name"))
        restart = 0
        if run_id is None:
            run_id, restart = elastic_run_id(save_root, name)
        if run_id is None:
            return cls(given, None, modification, None, overrides)
        folder = save_root / "models" / name / run_id
        checkpoint, resume = load_from_any_rank(newest_checkpoint(folder) if folder.is_dir() else None)
        if checkpoint is None:
            return cls(given, None, modification, run_id, overrides)
        check_same_run(config, checkpoint["config"], folder)
        parser = cls(given, resume, modification, run_id, overrides, checkpoint, continue_run=True)
        parser.restart_note = f" (torchrun restart {restart})" if restart else ""
        return parser

    def init_obj(self, name, module, *args, **kwargs):
        """Build `module.<config[name]['type']>(*args, **config[name]['args'], **kwargs)`.

        A keyword given here that the config also sets is an error.
        """
        target, module_args = self._resolve(name, module, kwargs)
        module_args.update(kwargs)
        check_arguments(target, args, module_args, f"{name} ({self[name]['type']})")
        return target(*args, **module_args)

    def init_ftn(self, name, module, *args, **kwargs):
        """Like init_obj, but return a partial to call later."""
        target, module_args = self._resolve(name, module, kwargs)
        module_args.update(kwargs)
        return partial(target, *args, **module_args)

    def init_named(self, name, module):
        """`"loss": "nll_loss"` names a function of `module`; a {"type", "args"} section builds
        its class (init_obj) or binds its function's args (init_ftn)."""
        if isinstance(self[name], str):
            return find_by_name(module, self[name], name)
        target, _ = self._resolve(name, module, {})
        return self.init_obj(name, module) if isinstance(target, type) else self.init_ftn(name, module)

    def _resolve(self, name, module, kwargs):
        if name not in self._config:
            raise UserError(f"config has no '{name}' section; add {{\"type\": ..., \"args\": {{...}}}} for it")
        check_typed_section(self._config, name)
        section = self[name]
        module_args = dict(section.get("args", {}))
        clash = sorted(set(kwargs) & set(module_args))
        if clash:
            raise UserError(f"config sets {', '.join(f'{name}.args.{k}' for k in clash)}, which the "
                            f"code passes itself; remove it from the config")
        return find_by_name(module, section["type"], f"{name} type"), module_args

    def init_run(self):
        """Create the run folders (rank 0 only), save the config, start file logging.

        Called when training starts, once every part is built and the checkpoint
        is checked, so that a bad config or checkpoint leaves no folder.
        """
        if dist.is_main_process():
            try:
                self._make_run_dirs()
            except OSError as err:  # checked by check_save_dir; this catches a classic train.py's run
                raise UserError(f"cannot create the run folder {self.save_dir}: {err.strerror}; choose another "
                                "folder with -o trainer.save_dir=PATH") from None
            write_json(self._config, self.save_dir / "config.json")
            marker = elastic_marker(self.trainer_options.save_dir, self._config["name"])
            if marker is not None:  # a restarted worker group finds this run through it
                marker.parent.mkdir(parents=True, exist_ok=True)
                marker.write_text(self._run_id)
            self._setup_logging(to_file=True)
            self.get_logger("config").debug(f"Resolved config: {json.dumps(self._config)}")  # pasteable JSON
        else:
            self._setup_logging(to_file=False)
        self._run_id = dist.broadcast_object(self._run_id)
        self.run_started = True

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
        write_json(content, self.save_dir / name)

    def _make_run_dirs(self):
        if self.continue_run:  # another node may hold the run's files: make the folder here too
            self.save_dir.mkdir(parents=True, exist_ok=True)
        else:
            base_id, suffix = self._run_id, 0
            while True:
                try:
                    self.save_dir.mkdir(parents=True, exist_ok=self._exact_run_id)
                    break
                except FileExistsError:  # another run started in the same second
                    suffix += 1
                    self._run_id = f"{base_id}_{suffix}"
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
        return self._config[name]

    def __contains__(self, name):
        return name in self._config

    def get(self, name, default=None):
        return self._config.get(name, default)

    @property
    def config(self):
        return self._config

    @property
    def save_dir(self):
        """saved/models/<name>/<run_id>; a continued run keeps its checkpoint's folder."""
        if self._in_checkpoint_folder:
            return self.resume.parent
        return Path(self.trainer_options.save_dir) / "models" / self._config["name"] / self._run_id

    @property
    def log_dir(self):
        return Path(self.trainer_options.save_dir) / "log" / self._config["name"] / self._run_id

    @property
    def run_id(self):
        return self._run_id


def _one_line_error(parser, message):
    """argparse's error, as one line: what is wrong and where to look."""
    parser.exit(2, f"error: {message}; see python {parser.prog} --help\n")


def _get_opt_name(flags):
    return next((flag for flag in flags if flag.startswith("--")), flags[0]).replace("--", "")
