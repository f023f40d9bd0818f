"""ConfigParser: read the config, apply CLI overrides, own the run folders and logging,
and build the configured parts by name (init_obj / init_ftn)."""
import logging
import os
import random
from datetime import datetime
from functools import partial, reduce
from operator import getitem
from pathlib import Path

from logger import setup_logging
from utils import distributed as dist
from utils.checkpoint import load_checkpoint
from utils.config_check import check_config
from utils.errors import UserError
from utils.lookup import check_arguments, find_by_name
from utils.overrides import apply_override, parse_override
from utils.util import read_json, write_json

LOG_LEVELS = {0: logging.WARNING, 1: logging.INFO, 2: logging.DEBUG}


class ConfigParser:
    def __init__(self, config, resume=None, modification=None, run_id=None, overrides=(),
                 checkpoint=None, continue_run=False):
        """
        config: dict of the experiment (see config.json).
        resume: path of a checkpoint to resume from, or None.
        modification: {'section;key;...': value} from registered CLI flags (None values skipped).
        run_id: name of the run folder; default: a timestamp, made unique when it is taken.
        overrides: ['key.path=value', '+new.key=value'] from -o.
        checkpoint: the already-loaded checkpoint at `resume` (saves loading it twice).
        continue_run: write into the checkpoint's own run folder instead of a new one.
        """
        self._config = _update_config(config, modification, overrides)
        check_config(self._config)
        self.resume = Path(resume) if resume is not None else None
        self.checkpoint = checkpoint
        setup_logging(None, to_file=False)  # console only until the run folder exists
        if self._config.get("seed") is None:
            # no seed given: choose one, record it, and share it so every rank agrees
            self._config["seed"] = dist.broadcast_object(random.SystemRandom().randrange(2**31))

        save_dir = Path(self._config["trainer"]["save_dir"])
        name = self._config["name"]
        if continue_run:
            self._run_id = self.resume.parent.name
            self._save_dir = self.resume.parent
        else:
            self._run_id = run_id or dist.broadcast_object(datetime.now().strftime(r"%m%d_%H%M%S"))
            self._save_dir = save_dir / "models" / name / self._run_id
        self._log_dir = save_dir / "log" / name / self._run_id
        self._exact_run_id = run_id is not None or continue_run
        self.continue_run = continue_run
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
        checkpoint, resume = None, None
        if parsed.resume is not None:
            resume = Path(parsed.resume)
            checkpoint = load_checkpoint(resume)
        if parsed.config is not None:
            config = read_json(parsed.config)
        elif checkpoint is not None:
            config = checkpoint["config"]
        else:
            raise UserError("give a config with -c (e.g. -c config.json) or a checkpoint to resume "
                            "with -r (e.g. -r saved/models/<name>/<run>/model_latest.pth)")
        modification = {opt.target: getattr(parsed, _get_opt_name(opt.flags)) for opt in options}
        continue_run = checkpoint is not None and parsed.config is None
        return cls(config, resume, modification, overrides=parsed.override or (),
                   checkpoint=checkpoint, continue_run=continue_run)

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

    def _resolve(self, name, module, kwargs):
        section = self[name]
        module_args = dict(section.get("args", {}))
        clash = sorted(set(kwargs) & set(module_args))
        if clash:
            raise UserError(f"config sets {', '.join(f'{name}.args.{k}' for k in clash)}, which the "
                            f"code passes itself; remove it from the config")
        return find_by_name(module, section["type"], f"{name} type"), module_args

    def init_run(self):
        """Create the run folders (rank 0 only), save the config, start file logging.

        Called once the parts are built, so that a bad config leaves no folder.
        """
        if dist.is_main_process():
            self._make_run_dirs()
            write_json(self._config, self._save_dir / "config.json")
            setup_logging(self._log_dir, to_file=True)
        else:
            setup_logging(None, to_file=False)
            logging.getLogger().setLevel(logging.WARNING)
        self._run_id = dist.broadcast_object(self._run_id)
        name, save_root = self._config["name"], Path(self._config["trainer"]["save_dir"])
        if not self.continue_run:
            self._save_dir = save_root / "models" / name / self._run_id
        self._log_dir = save_root / "log" / name / self._run_id
        self.run_started = True

    def _make_run_dirs(self):
        if self.continue_run:
            self._log_dir.mkdir(parents=True, exist_ok=True)
            return
        base_id, suffix = self._run_id, 0
        while True:
            try:
                self._save_dir.mkdir(parents=True, exist_ok=self._exact_run_id)
                break
            except FileExistsError:  # another run started in the same second
                suffix += 1
                self._run_id = f"{base_id}_{suffix}"
                self._save_dir = self._save_dir.with_name(self._run_id)
        self._log_dir = self._log_dir.with_name(self._run_id)
        self._log_dir.mkdir(parents=True, exist_ok=True)

    def get_logger(self, name, verbosity=2):
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
        return self._save_dir

    @property
    def log_dir(self):
        return self._log_dir

    @property
    def run_id(self):
        return self._run_id


def _one_line_error(parser, message):
    """argparse's error, as one line: what is wrong and where to look."""
    parser.exit(2, f"error: {message}; see python {parser.prog} --help\n")


def _update_config(config, modification, overrides):
    config = _plain(config)
    for key, value in (modification or {}).items():
        if value is not None:
            _set_by_path(config, key, value)
    for text in overrides:
        path, value, allow_new = parse_override(text)
        apply_override(config, path, value, allow_new)
    return config


def _plain(value):
    """A deep copy made of dicts and lists only."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _get_opt_name(flags):
    for flg in flags:
        if flg.startswith("--"):
            return flg.replace("--", "")
    return flags[0].replace("--", "")


def _set_by_path(tree, keys, value):
    """Set a value in a nested object in tree by sequence of keys."""
    keys = keys.split(";")
    node = tree
    for key in keys[:-1]:  # a missing section is reported by check_config, not here
        node = node.setdefault(key, {})
    node[keys[-1]] = value


def _get_by_path(tree, keys):
    """Access a nested object in tree by sequence of keys."""
    return reduce(getitem, keys, tree)
