"""Which run folders are a study's own (tune.py). Trial k of study S trains the run S-trial<k>, a name that does
not depend on the storage: a study of the same name in another database, or one made again after its database
was deleted, would continue the first study's runs as if they were its trials, or collide with them.

A folder S-trial<k> is this study's when one of its trials claims it (the trial's run_id, set before its run
starts) and, once that run has trained an epoch, holds the run the trial recorded (its run.json's run_uid).
Anything else is refused in one line before any trial."""
import contextlib
import re

from runs.files import ORIGIN_FILE, RUN_CONFIG
from runs.identity import folder_uid
from search.revived import RevivedElsewhere, unless_revived
from search.storage import retry_races
from utils.errors import UserError

RUN_UID = "run_uid"  # trial user attr: the identity of the run the trial trains (a retry inherits it)
FIX = "name another study with --study, or move that folder away"


def check_trial_folders(study, runs_dir, shown_url):
    """Refuse (UserError) a run folder <study>-trial<k> under `runs_dir` that no trial of `study` made."""
    name = re.compile(re.escape(study.study_name) + r"-trial\d+")
    folders = [folder for folder in sorted(runs_dir.glob(f"{study.study_name}-trial*"))
               if name.fullmatch(folder.name) and _holds_a_run(folder)]
    claims = {}  # read after the folders: a trial claims its folder before making it, so a worker's new one counts
    for trial in study.get_trials(deepcopy=False):
        run_id = trial.user_attrs.get("run_id")
        if run_id is not None:
            claims.setdefault(run_id, set()).update({trial.user_attrs.get(RUN_UID)} - {None})
    for folder in folders:
        where = f"run folder {folder} is not a trial of study {study.study_name} in {shown_url}"
        if folder.name not in claims:
            raise UserError(f"{where}: none of its trials made it (a study of that name in another storage, or "
                            f"one made before this study); {FIX}")
        held = folder_uid(folder)
        if claims[folder.name] and held is not None and held not in claims[folder.name]:
            raise UserError(f"{where}: it holds another run than the one its trial trained; {FIX}")


def check_trial_run(trial, folder, retry):
    """Refuse, as the trial starts, a folder another study's run took since the check before the trials: a new
    trial's folder holds no run yet, and a retry's holds the run its trial recorded."""
    held, recorded = folder_uid(folder), trial.user_attrs.get(RUN_UID)
    if held is not None and (held != recorded if recorded else not retry):
        raise UserError(f"run folder {folder} holds a run that trial {trial.number} did not start (a study of the "
                        f"same name elsewhere, or another job); {FIX}")


class RecordRun:
    """Epoch listener: after the run's first epoch here, its trial records the run's identity, once."""

    def __init__(self, trial, run):
        self.trial, self.run, self.done = trial, run, trial is None

    def __call__(self, epoch, log):
        if self.done or self.run.uid is None:
            return
        self.done = True
        if self.trial.user_attrs.get(RUN_UID) != self.run.uid:
            # a trial revived elsewhere meanwhile is not recorded: its retry records the run, and the pruning
            # check after this epoch has every rank leave the trial (search/revived.py)
            with contextlib.suppress(RevivedElsewhere), unless_revived(self.trial):
                retry_races(lambda: self.trial.set_user_attr(RUN_UID, self.run.uid),
                            f"record the run of trial {self.trial.number}")


def _holds_a_run(folder):
    return (folder / RUN_CONFIG).is_file() or (folder / ORIGIN_FILE).is_file()
