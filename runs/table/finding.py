"""Which folders compare.py reads: a run folder, a name folder (saved/models/<name>/) of runs, the models
folder above it, or the save_dir (saved/); whatever else lies there is skipped with one line saying why."""
from pathlib import Path

from runs.files import RUN_CONFIG, models_of
from runs.table.reading import BadRun, looks_like_run, read_run
from utils.errors import UserError


def read_runs(paths):
    """(runs, skipped): a record per readable run under `paths`, and '<path>: <why>' for each thing skipped."""
    runs, skipped = [], []
    for folder in run_folders(paths, skipped):
        try:
            runs.append(read_run(folder))
        except BadRun as why:
            skipped.append(f"{folder}: {why}; skipped")
    return runs, skipped


def run_folders(paths, skipped):
    folders = []
    for path in map(Path, paths):
        if not path.exists():
            raise UserError(f"{path} does not exist; give run folders or a name folder such as "
                            "saved/models/Mnist_LeNet/")
        if not path.is_dir():
            raise UserError(f"{path} is a file; give its folder, or a name folder such as saved/models/Mnist_LeNet/")
        folders.extend(_runs_in(path, skipped))
    return list(dict.fromkeys(folders))  # a run named twice (a folder and its parent) is shown once


def _runs_in(folder, skipped):
    """A run folder itself; the runs of a name folder; or those of each name folder in a models folder."""
    if _is_run(folder):
        return [folder]  # a run, or a broken one that read_run names
    if models_of(folder).is_dir():  # a save_dir: its runs are in models/ (log/ and tune/ hold none)
        folder = models_of(folder)
    entries = sorted(folder.iterdir(), key=lambda p: p.name)
    if not any(_is_run(entry) for entry in entries) and any(entry.is_dir() for entry in entries):
        return [run for entry in entries for run in _name_folder(entry, skipped)]  # saved/models/
    return _name_folder(folder, skipped)


def _name_folder(folder, skipped):
    if not folder.is_dir():
        skipped.append(f"{folder}: a stray file, not a run folder; skipped")
        return []
    runs = []
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if _is_run(entry):
            runs.append(entry)
        elif entry.is_dir():
            skipped.append(f"{entry}: no {RUN_CONFIG} or run files: not a run folder; skipped")
        else:
            skipped.append(f"{entry}: a stray file, not a run folder; skipped")
    return runs


def _is_run(path):
    return path.is_dir() and ((path / RUN_CONFIG).exists() or looks_like_run(path))
