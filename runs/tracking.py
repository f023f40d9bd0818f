"""What the experiment trackers (MLflow, W&B) are told about a run: its identity, where it lives, and how its
tracker run ids are kept (trackers.json, written by the run like its other files)."""
from logger.trackers.run_info import RunInfo
from runs.files import HISTORY, RUN_CONFIG, TRACKER_IDS
from utils.provenance import git_state
from utils.redact import redact_all


def run_info(config, world_size, git=None):
    """The RunInfo of the run a ConfigParser owns (git: provenance.json's record, so git is asked once per start;
    None: asked here); a search trial is tagged with its study and number."""
    run = config.run
    search = config.get("tune") if isinstance(config.get("tune"), dict) else {}
    # trackers store the config as parameters: a password in a URL is shown as *** there
    return RunInfo(config["name"], run.run_id, run.folder, run.log_dir, redact_all(config.config), world_size,
                   ((git if git is not None else git_state()) or {}).get("commit", ""),
                   {f"tune_{key}": str(search[key]) for key in ("study", "trial") if key in search},
                   ids_file=run.folder / TRACKER_IDS, write_ids=lambda ids: run.write_json(TRACKER_IDS, ids),
                   artifacts=[run.folder / RUN_CONFIG, run.folder / HISTORY], run_uid=run.uid)
