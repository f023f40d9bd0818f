"""What a trial's own files cannot say: that tune.py pruned it. Read from the study's SQLite file (a file
beside the runs, no server; a PostgreSQL study is not asked), read-only, with the standard library."""
import json
import sqlite3
from pathlib import Path

from runs.files import PROVENANCE

# Optuna's state of a trial -> the state compare.py shows (COMPLETE and RUNNING: the run's files say it best)
SHOWN = {"PRUNED": "pruned", "FAIL": "failed", "WAITING": "interrupted (queued again)"}
TRIAL_STATES = """SELECT a.value_json, t.state FROM trials t JOIN studies s ON s.study_id = t.study_id
                  JOIN trial_user_attributes a ON a.trial_id = t.trial_id AND a.key = 'run_id'
                  WHERE s.study_name = ? ORDER BY t.number"""


def mark_trials(runs, warn):
    """Set the state of each pruned, failed or requeued trial among `runs` from its study's SQLite file."""
    studies = {}
    for run in runs:
        study = run["settings"].get("tune.study")
        if study is None or run["state"].startswith("running"):
            continue
        path = _database(run, study)
        if path is None:
            continue
        if (path, study) not in studies:
            studies[path, study] = _trial_states(path, study, warn)
        state = SHOWN.get(studies[path, study].get(run["run"]))
        if state is not None:
            run["state"] = state


def _database(run, study):
    """The study's SQLite file: the storage the trial recorded (provenance.json), else <save_dir>/tune/<study>.db."""
    folder = run["folder"]
    candidates = [folder.parent.parent.parent / "tune" / f"{study}.db"]
    try:
        url = json.loads((folder / PROVENANCE).read_text(encoding="utf-8"))["tune"]["storage"]
        if url.startswith("sqlite:///"):
            candidates.insert(0, Path(url.removeprefix("sqlite:///")))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass  # no provenance note: the default place
    return next((path for path in candidates if path.is_file()), None)


def _trial_states(path, study, warn):
    """{run id: Optuna state of its latest trial} (a retry continues the run of the trial it retries)."""
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2) as database:
            found = database.execute(TRIAL_STATES, (study,)).fetchall()
    except sqlite3.Error as err:
        warn(f"{path}: the study's database cannot be read ({err}); its trials show the state of their files")
        return {}
    states = {}
    for value, state in found:
        try:
            states[json.loads(value)] = state
        except (ValueError, TypeError):
            continue
    return states
