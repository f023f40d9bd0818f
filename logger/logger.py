"""Logging setup: console plus a rotating info.log in the run's log folder."""
import json
import logging
import logging.config
import sys
from contextlib import contextmanager
from functools import partial
from pathlib import Path

from utils.atomic import SaveFailed, save_failed
from utils.redact import redact

DEFAULT_CONFIG = Path(__file__).with_name("logger_config.json")


def setup_logging(save_dir, log_config=DEFAULT_CONFIG, default_level=logging.INFO, to_file=True,
                  full_disk_hint="free space, then resume the run"):
    """Configure the root logger from `log_config`, writing files into `save_dir`; with `to_file=False`
    (ranks other than 0, or before a run folder exists) only the console handler is kept. `full_disk_hint`:
    what to do when a log file cannot be written (the command that continues the run)."""
    log_config = Path(log_config)
    if not log_config.is_file():
        logging.basicConfig(level=default_level)
        logging.getLogger(__name__).warning(f"Warning: logging configuration file {log_config} not found.")
        return
    config = json.loads(log_config.read_text())
    handlers = config["handlers"]
    for name in list(handlers):
        if "filename" in handlers[name]:
            if to_file:
                handlers[name]["filename"] = str(Path(save_dir) / handlers[name]["filename"])
            else:
                del handlers[name]
                config["root"]["handlers"].remove(name)
    logging.config.dictConfig(config)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_redact_record)  # a URL's password never reaches the console or info.log
        if isinstance(handler, logging.FileHandler):
            handler.handleError = partial(_fail_on_full_disk, handler, full_disk_hint)
        else:
            handler.addFilter(_shown_once)


_console_seen = None  # keys of once-per-process messages the console has shown; None: show every time


@contextmanager
def once_on_console():
    """Inside, a message logged with extra={"once": key} reaches the console only the first time (files get it
    every time): tune.py trains many runs in one process, and the model printout once is enough."""
    global _console_seen
    _console_seen = set()
    try:
        yield
    finally:
        _console_seen = None


def _shown_once(record):
    key = getattr(record, "once", None)
    if key is None or _console_seen is None:
        return True
    shown = key in _console_seen
    _console_seen.add(key)
    return not shown


def _redact_record(record):
    text = record.getMessage()
    hidden = redact(text)
    if hidden != text:
        record.msg, record.args = hidden, ()
    return True


def _fail_on_full_disk(handler, hint, record):
    """A log file that cannot be written (a full disk) stops the run with one line and exit 74, like
    every other file of the run; logging's default prints a traceback per message and goes on."""
    error = sys.exc_info()[1]
    if isinstance(error, SaveFailed):  # raised below, caught again by RotatingFileHandler.emit's own handler
        raise error
    if isinstance(error, OSError):
        logging.getLogger().removeHandler(handler)  # the one line is printed by the entry point
        raise save_failed(error, [Path(handler.baseFilename)], hint=hint) from None
    logging.Handler.handleError(handler, record)
