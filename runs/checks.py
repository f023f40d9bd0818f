"""The checks a start makes before it continues a run: is the folder this run's, is the config the run's own,
did the run start from this checkpoint. Each refuses with one line (UserError) naming what differs."""
import json
from pathlib import Path

from runs.files import HISTORY, ORIGIN_FILE, RUN_CONFIG, RUN_UID
from runs.folder import foreign_history
from runs.history import DamagedHistory, read_history
from runs.identity import belongs, folder_uid
from runs.journal import as_recovered
from utils import distributed as dist
from utils.config.dotted import differences, dotted
from utils.errors import UserError

# what a resubmitted named run may change; everything else must match the run's own config
MAY_CHANGE = {("trainer", k) for k in ("epochs", "verbosity", "save_period", "keep_last", "log_step",
                                       "tensorboard", "tensorboard_images", "tensorboard_histograms", "trackers",
                                       "checkpoint_interval", "early_stop", "save_dir")} \
    | {("data_loader", "args", "data_dir")}  # where files live may differ from node to node


def saved_config(folder):
    """The run's own config.json (written when the run was made), from any rank's disk; None if none."""
    local, problem = None, None
    path = Path(folder) / RUN_CONFIG
    if path.is_file():
        try:
            local = json.loads(path.read_text())
        except (OSError, ValueError) as err:  # hand-edited, most likely: taking it for a new run would fail forever
            problem = f"{path} cannot be read ({type(err).__name__}: {err}); repair it, or choose another --run_id"
    found = dist.all_gather_object((local, problem))
    config = next((c for c, _ in found if c is not None), None)
    problem = next((p for _, p in found if p), None)
    if config is None and problem:
        raise UserError(problem)
    return config


def check_own_folder(path, checkpoint):
    """-r FILE goes on in FILE's folder: one whose config.json is another's (a download folder) is not written over."""
    saved = saved_config(path.parent)
    foreign = saved is not None and (not isinstance(saved, dict) or saved.get("name") != checkpoint["config"]["name"])
    if any(dist.all_gather_object(foreign or foreign_history(path.parent / HISTORY))):
        raise UserError(f"{path.parent} holds a {RUN_CONFIG} or {HISTORY} that is not this run's, and resuming "
                        f"{path.name} there would overwrite it; copy the checkpoint into a folder of its own and "
                        "resume the copy")
    if any(dist.all_gather_object(not belongs(checkpoint, folder_uid(path.parent)))):  # a stray file of another run
        raise UserError(f"{path} belongs to another run than the one in {path.parent} (its {RUN_UID} is not the "
                        f"one in {ORIGIN_FILE}), and resuming it there would overwrite that run; copy the checkpoint "
                        "into a folder of its own and resume the copy")


def check_origin(folder, resume):
    """`-r FILE --run_id NAME` into an existing run NAME: only that run's own requeue may continue it."""
    resume = Path(resume).resolve()
    try:
        origin = json.loads((Path(folder) / ORIGIN_FILE).read_text()).get("origin")  # the checkpoint it started from
    except (OSError, ValueError):  # no run.json, or a broken one
        origin = None
    if resume.parent == Path(folder).resolve() or origin == str(resume):
        return
    raise UserError(f"run folder {folder} already holds another run, not one started from {resume}; "
                    "choose another --run_id, or resume that run with its own checkpoint")


def check_same_run(given, saved, folder):
    """A named run resumed with another config would silently mix two experiments: refuse it."""
    differing = sorted(dotted(path) for path, value, _ in differences(given, saved)
                       if not any(path[:n] in MAY_CHANGE for n in (1, 2, 3))
                       and not (path == ("seed",) and value is None))  # seed null: the run chose one when made
    if differing:
        raise UserError(f"run folder {folder} holds a run with another config ({', '.join(differing[:4])} "
                        "differ); give its own config, choose another --run_id, or fine-tune with -c and -r")


def check_history(folder, epochs_done):
    """Before a continued run trains (every rank calls it; rank 0 reads): its metrics.csv, if it has one, reads
    back and holds a row for each epoch from its first up to epochs_done (a later row is replaced when its epoch
    trains again). Its first row is epoch 1, or a later one for a run forked from another run's checkpoint."""
    problem = None
    if dist.is_main_process():
        # as the next open() leaves it: a save that a kill cut between its renames is finished there
        path = as_recovered(folder).get(HISTORY, Path(folder) / HISTORY)
        try:
            epochs = [row["epoch"] for row in read_history(path)]
            first = int(epochs[0]) if epochs else 1
            if path.is_file() and [e for e in epochs if e <= epochs_done] != list(range(first, epochs_done + 1)):
                raise DamagedHistory(f"holds {len(epochs)} rows, but the checkpoint has trained {epochs_done} "
                                     "epochs: rows were lost")
        except DamagedHistory as err:
            problem = UserError(f"{path} {err}; restore it, or move it away to go on without the earlier rows (a "
                                f"new one starts at epoch {epochs_done + 1})")
    problem = dist.broadcast_object(problem)
    if problem is not None:
        raise problem
