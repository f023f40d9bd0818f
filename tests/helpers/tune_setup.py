"""Small studies for the tune.py tests: the shrunk config with a `tune` section, and ways to run it."""
import copy
import os
import signal
import subprocess
import sys
from pathlib import Path

import optuna

from search.storage import storage_url
from tests.helpers.configs import shrink_config, write_config
from tests.helpers.paths import REPO

ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
LR_SPACE = {"optimizer.args.lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True}}


def tune_config(tmp_path, data_dir, space=None, trainer=None, **tune):
    """A shrunk config (verbosity 1, no TensorBoard) whose tune section has `tune`'s keys; returns the dict."""
    config = shrink_config(tmp_path, data_dir, verbosity=1, **(trainer or {}))
    config["tune"] = {"study": "s", "trials": 2, "sampler": {"type": "TPESampler", "args": {"seed": 0}},
                      "space": copy.deepcopy(space or LR_SPACE), **tune}
    return config


def start_tune(config_path, *flags, env=None):
    """tune.py as its own process (stdout piped line by line, stderr kept)."""
    return subprocess.Popen([sys.executable, "tune.py", "-c", str(config_path), *map(str, flags)], cwd=REPO,
                            env={**ENV, **(env or {})}, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def signal_when(process, path, signum, timeout=120):
    """Send `signum` once `path` exists (a checkpoint written); True when the process was still running."""
    import time

    deadline = time.monotonic() + timeout
    while not Path(path).exists():
        if process.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    process.send_signal(signum)
    return True


def load_study(config):
    """The study `config` names, read from its storage (tune.py's default SQLite file when null)."""
    name = config["tune"]["study"]
    return optuna.load_study(study_name=name, storage=storage_url(config["tune"].get("storage"),
                                                                  config["trainer"]["save_dir"], name))


def write(tmp_path, config, name="config.json"):
    return write_config(tmp_path, config, name)


KILL = signal.SIGKILL


def after_each_epoch(monkeypatch, action):
    """Every trainer tune.py builds calls `action(epoch)` after each epoch's save (a stop, a kill)."""
    import train

    build = train.build_trainer

    def built(*args, **kwargs):
        trainer = build(*args, **kwargs)
        trainer.epoch_listeners.append(lambda epoch, log: action(epoch))
        return trainer
    monkeypatch.setattr(train, "build_trainer", built)


def signal_self(signum):
    """Send this process `signum` now, as a user's Ctrl-C or a scheduler's SIGTERM would."""
    os.kill(os.getpid(), signum)
