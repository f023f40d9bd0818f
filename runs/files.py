"""A run folder's file names and path formula, spelled once; no torch here, so that compare.py reads runs fast.

Every other module takes these names from here: `grep` finds each of them as a literal in this file only.
"""
import re
from pathlib import Path

LATEST, BEST = "model_latest.pth", "model_best.pth"
EPOCH_PREFIX = "checkpoint-epoch"  # checkpoint-epoch<N>.pth, every trainer.save_period epochs
EPOCH_FILE = re.compile(re.escape(EPOCH_PREFIX) + r"([1-9]\d*)\.pth")  # anything else is not ours to read or prune
EPOCH_GLOB = f"{EPOCH_PREFIX}*.pth"
EPOCH_PATTERN = f"{EPOCH_PREFIX}<N>.pth"  # how messages name them
SHARDS = "shards"  # under FSDP: the folder of every save's shard folders, and a .pth's key naming its own
SHARD_FOLDER = re.compile(re.escape(SHARDS) + r"/epoch\d+-step\d+-[0-9a-f]{8}")  # what a .pth may refer to
CONSOLIDATED = ".consolidated.pth"  # export.py --consolidate: model_best.pth -> model_best.consolidated.pth
HISTORY = "metrics.csv"  # one row per finished epoch
RUN_CONFIG = "config.json"  # the run's config as it trains
ORIGIN_FILE = "run.json"  # {"origin": the checkpoint a run started from, or null, "run_uid": its identity}
RUN_UID = "run_uid"  # a run's identity: in its run.json and in every checkpoint it saves (runs/identity.py)
TRACKER_IDS = "trackers.json"  # {tracker: its run's id}, so a resume continues the same tracker runs
PROVENANCE = "provenance.json"  # command, versions, git commit, device of the start that wrote it
WORKER_EXIT = "worker_exit.json"  # tune.py: why a trial's worker left it RUNNING (search/worker_exit.py)
TEST_SUFFIX = ".test.json"  # test.py's results beside a checkpoint: model_best.test.json


def epoch_file(epoch):
    return f"{EPOCH_PREFIX}{epoch}.pth"


def shard_folder_name(epoch, step, token):
    """shards/epoch<N>-step<S>-<token>: a fresh folder for each sharded save (`token`: 8 hex digits, so two saves
    at one position, e.g. a restart's, never share one), named relative to the run folder."""
    return f"{SHARDS}/epoch{epoch}-step{step}-{token}"


def test_results_file(checkpoint, exported=False):
    """Where test.py writes the results of `checkpoint` (model_best.pth -> model_best.test.json; an exported
    model keeps its suffix: model_best.pt2 -> model_best.pt2.test.json)."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name((checkpoint.name if exported else checkpoint.stem) + TEST_SUFFIX)


def models_of(save_dir):
    """The folder that holds every experiment's runs: <trainer.save_dir>/models."""
    return Path(save_dir) / "models"


def runs_of(save_dir, name):
    """The folder that holds every run of experiment `name`: <trainer.save_dir>/models/<name>."""
    return models_of(save_dir) / name


def run_folder(save_dir, name, run_id):
    """The one formula for a run's folder: <trainer.save_dir>/models/<name>/<run_id>."""
    return runs_of(save_dir, name) / run_id


def logs_of(save_dir, name):
    """The folder that holds every run's log folder (info.log, TensorBoard events): <save_dir>/log/<name>."""
    return Path(save_dir) / "log" / name


def log_dir_beside(folder, name):
    """<root>/log/<name>/<run> for a run folder <root>/models/<name>/<run>; any other folder keeps its log itself."""
    folder = Path(folder)
    if folder.parent.name == name and folder.parent.parent == models_of(folder.parent.parent.parent):
        return logs_of(folder.parent.parent.parent, name) / folder.name
    return folder
