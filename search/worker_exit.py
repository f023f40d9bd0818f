"""Why a worker left its trial RUNNING, where the worker that revives the trial can read it (tune.py).

A worker that the study's database left waiting past tune.storage_wait stops (exit 75) with its trial RUNNING:
nothing can be told then. Revived later, that trial looked killed and used up one of its MAX_RETRY kill retries,
though the outage was no fault of the trial. The cause is known only to the stopping worker, so it leaves it
in its trial's run folder (a file under the run's lock), and the reviver reads it there: on this machine, or on
any machine that shares the run folders. A reviver that cannot see the folder counts a kill (docs/search.md).
"""
import json

from runs.files import WORKER_EXIT
from runs.run import write_while_free
from utils.errors import UserError

OUTAGE = "storage outage"


def record_outage_exit(runs_dir, trial):
    """Note in `trial`'s run folder that its worker stops on a storage outage; best effort, no storage call (the
    trial's run_id is the worker's own copy)."""
    run_id = trial.user_attrs.get("run_id")
    if not run_id or not (runs_dir / run_id).is_dir():
        return
    try:
        write_while_free(runs_dir / run_id, WORKER_EXIT, {"trial": trial.number, "cause": OUTAGE})
    except (UserError, OSError):  # a full or read-only disk too: the revival then counts a kill
        pass


def left_by_outage(runs_dir, trial):
    """Whether the worker of `trial` (a FrozenTrial being revived) recorded that it stopped on a storage outage."""
    run_id = trial.user_attrs.get("run_id")
    if runs_dir is None or not run_id:
        return False
    try:
        record = json.loads((runs_dir / run_id / WORKER_EXIT).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(record, dict) and record.get("trial") == trial.number and record.get("cause") == OUTAGE
