"""Where a run continues from: an explicit -r, a named run's folder (--run_id), or the run a
torchrun restart belongs to; the checkpoint is read where it exists and sent to every rank.

Every rank looks on its own disk, the ranks compare what they found, and the one holding the
newest checkpoint sends it to the others: multi-node runs need no shared filesystem, and a
restart that moved rank 0 to another node still finds the run.
"""
import os
from pathlib import Path

from utils import distributed as dist
from utils.checkpoint import load_checkpoint
from utils.errors import UserError

MARKERS = ".torchelastic"  # <save_dir>/.torchelastic/<name>/<torchrun's run id> holds the run's id
# what a resubmitted named run may change; everything else must match the run's own config
MAY_CHANGE = {("trainer", k) for k in ("epochs", "verbosity", "save_period", "keep_last", "log_step",
                                       "tensorboard", "tensorboard_images", "tensorboard_histograms",
                                       "checkpoint_interval", "early_stop", "save_dir")} \
    | {("seed",), ("data_loader", "args", "data_dir")}  # where files live may differ from node to node


def newest_checkpoint(folder):
    """model_latest.pth, else the highest checkpoint-epoch<N>.pth, in `folder`; None when there is none."""
    folder = Path(folder)
    if (folder / "model_latest.pth").is_file():
        return folder / "model_latest.pth"
    epochs = sorted(folder.glob("checkpoint-epoch*.pth"), key=lambda p: int(p.stem.removeprefix("checkpoint-epoch")))
    return epochs[-1] if epochs else None


def load_from_any_rank(local_path, required=False):
    """The checkpoint at `local_path` (this rank's disk; None: none here), from whichever rank
    holds the most advanced one, on every rank: (checkpoint, path) or (None, None).

    A bad file, or no file at all when `required`, is a UserError on every rank, so that no
    rank waits for another in vain.
    """
    found, problem = None, None
    if local_path is not None and Path(local_path).is_file():
        try:
            found = load_checkpoint(local_path)
        except UserError as err:
            problem = str(err)
    progress = (found["epoch"], found.get("global_step", 0)) if found is not None else None
    reports = dist.all_gather_object((progress, problem, str(local_path) if found is not None else None))
    problems = [p for _, p, _ in reports if p]
    if problems:
        raise UserError(problems[0])
    holders = [(progress, -rank) for rank, (progress, _, _) in enumerate(reports) if progress is not None]
    if not holders:
        if required:
            raise UserError(f"checkpoint {local_path} does not exist; pass the path of a .pth file "
                            "under saved/models/ with -r")
        return None, None
    source = -max(holders)[1]
    checkpoint = dist.broadcast_object(found if dist.get_rank() == source else None, src=source)
    return checkpoint, Path(reports[source][2])


def elastic_marker(save_dir, name):
    """Where the first worker group records its run id, for the groups torchrun restarts; None
    when torchrun will not restart (no --max-restarts)."""
    if int(os.environ.get("TORCHELASTIC_MAX_RESTARTS", 0)) == 0 or "TORCHELASTIC_RUN_ID" not in os.environ:
        return None
    return Path(save_dir) / MARKERS / name / os.environ["TORCHELASTIC_RUN_ID"]


def elastic_run_id(save_dir, name):
    """(the run id the first worker group recorded, the restart number) when torchrun restarted this
    group, else (None, 0). Every rank takes part: restart counts differ from node to node (only a
    failed node's agent counts its restart), and the marker may be on any node's disk."""
    marker = elastic_marker(save_dir, name)
    if marker is None:
        return None, 0
    restart = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", 0))
    local = marker.read_text().strip() if marker.is_file() else None
    reports = dist.all_gather_object((restart, local))
    restart = max(count for count, _ in reports)
    if restart == 0:  # a first start; a marker left by an earlier job with the same --rdzv_id is not ours
        return None, 0
    return next((found for _, found in reports if found), None), restart


def check_same_run(given, saved, folder):
    """A named run resumed with another config would silently mix two experiments: refuse it."""
    differing = sorted(".".join(path) for path in _differences(given, saved)
                       if not any(path[:n] in MAY_CHANGE for n in (1, 2, 3)))
    if differing:
        raise UserError(f"run folder {folder} holds a run with another config ({', '.join(differing[:4])} "
                        "differ); give its own config, choose another --run_id, or fine-tune with -c and -r")


def _differences(a, b, path=()):
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            yield from _differences(a.get(key), b.get(key), (*path, key))
    elif a != b and not (path == ("seed",) and a is None):  # seed null: the run chose one
        yield path
