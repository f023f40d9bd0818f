"""A run's identity: a random `run_uid`, drawn when the run is made, kept in its run.json and stored in every
checkpoint it saves. A checkpoint found in a run folder is that run's only when the two agree, so a stray file
(another run's checkpoint copied or moved there) is never continued as if it were the run's own. Runs and
checkpoints from before run_uid existed have none: they are taken as the folder's (docs/checkpoints.md)."""
import json
import uuid
from pathlib import Path

from runs.files import ORIGIN_FILE, RUN_UID


def new_uid():
    return uuid.uuid4().hex


def run_record(folder):
    """The folder's run.json as a dict ({} when it is missing or not one a run wrote)."""
    try:
        record = json.loads((Path(folder) / ORIGIN_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def folder_uid(folder):
    """The identity of the run in `folder`, or None (no run.json, or one from before run_uid)."""
    uid = run_record(folder).get(RUN_UID)
    return uid if isinstance(uid, str) and uid else None


def belongs(checkpoint, uid):
    """Whether `checkpoint` may be the run `uid`'s: the same identity, or either side has none (older files)."""
    theirs = checkpoint.get(RUN_UID) if isinstance(checkpoint, dict) else None
    return uid is None or theirs is None or theirs == uid
