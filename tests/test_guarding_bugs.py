"""Guards for bugs that once passed every suite (issue 24, item 9): each test here fails when its bug is put back.

The commit journal, the run's owner, the clean-up after a failed start, the same-run check on requeue, the
search's pruning and its report, a failing tracker, and misspelt lr_scheduler keys.
"""
import copy
import json
import logging
import os
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from logger.metrics_sink import MetricsSink
from logger.trackers.tracker_set import TrackerSet
from runs import folder as run_folder
from runs import journal
from runs import lock as run_lock
from runs.checks import check_same_run
from runs.files import LATEST
from search.report import best_trial, summary_lines
from tests.helpers.cli import run_cli
from tests.helpers.configs import shrink_config, write_config
from utils import tracker_specs as specs
from utils.errors import UserError
from utils.lookup import did_you_mean

optuna.logging.set_verbosity(optuna.logging.WARNING)


# ---- the commit journal and the run's owner -------------------------------------------------------------------


def test_recover_syncs_the_folder_after_its_last_rename(tmp_path, monkeypatch):
    """A rename is durable only once its folder is synced: a power cut after recover must not undo the commit."""
    folder = tmp_path / "run"
    folder.mkdir()
    renames = {name: f".{name}{journal.PENDING}" for name in (LATEST, "checkpoint-epoch1.pth")}
    for pending in renames.values():
        (folder / pending).write_bytes(b"epoch 1")
    (folder / journal.JOURNAL).write_text(json.dumps({"rename": renames}))  # a kill after the commit point
    events, real_replace, real_fsync = [], os.replace, os.fsync

    def replace(src, dst, **kwargs):
        real_replace(src, dst, **kwargs)
        events.append(("rename", Path(dst).name))

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "fsync", fsync)
    journal.recover(folder)

    assert {(folder / name).read_bytes() for name in renames} == {b"epoch 1"}
    last_rename = max(i for i, (kind, _) in enumerate(events) if kind == "rename")
    assert ("fsync", str(folder.resolve())) in events[last_rename + 1:], events


@pytest.mark.parametrize("files", [[("config.json", b"{}")], [("a.pth", b"a"), ("b.pth", b"b")]],
                         ids=["one file", "a group"])
def test_a_job_whose_lock_file_was_removed_writes_nothing(files, tmp_path):
    """One file is written without the journal; the owner check must come before that shortcut too."""
    folder = tmp_path / "run"
    folder.mkdir()
    run_lock.acquire(folder)
    try:
        (folder / run_lock.LOCK_NAME).unlink()  # a clean-up of dot files: another job may lock the run now
        with pytest.raises(run_lock.RunBusy, match="lock file of run folder .* was removed"):
            journal.write_files(folder, files)
    finally:
        run_lock.release(folder)
    assert sorted(p.name for p in folder.iterdir()) == []


@pytest.mark.parametrize("checkpoint", [LATEST, "checkpoint-epoch1.pth"])
def test_a_user_error_after_the_first_save_keeps_the_run(checkpoint, tmp_path):
    run, log = tmp_path / "saved" / "models" / "x" / "r1", tmp_path / "saved" / "log" / "x" / "r1"
    made = run_folder.missing_folders(run, log)
    run.mkdir(parents=True)
    log.mkdir(parents=True)
    (run / checkpoint).write_bytes(b"a saved epoch")

    run_folder.drop_unsaved_run(made, (run, log), UserError("a mistake found after the save"))
    assert (run / checkpoint).read_bytes() == b"a saved epoch" and log.is_dir()

    (run / checkpoint).unlink()  # the control: before its first save, the same start leaves nothing behind
    run_folder.drop_unsaved_run(made, (run, log), UserError("a mistake found before any save"))
    assert not (tmp_path / "saved").exists()


def test_a_requeue_may_move_the_data_but_not_change_the_experiment(tmp_path):
    saved = shrink_config(tmp_path, tmp_path / "node_a" / "data")
    moved = copy.deepcopy(saved)
    moved["data_loader"]["args"]["data_dir"] = str(tmp_path / "node_b" / "data")  # another node's disk
    check_same_run(moved, saved, tmp_path)

    moved["optimizer"]["args"]["lr"] = 0.5
    with pytest.raises(UserError, match=r"\(optimizer\.args\.lr differ\)"):
        check_same_run(moved, saved, tmp_path)


# ---- the search -----------------------------------------------------------------------------------------------


class _AlwaysPrune(optuna.pruners.BasePruner):
    def prune(self, study, trial):
        return True


def test_the_pruner_ends_a_trial_before_its_last_epoch_never_at_it():
    import tune

    study = optuna.create_study(pruner=_AlwaysPrune())
    early, last = study.ask(), study.ask()
    with pytest.raises(optuna.TrialPruned):
        tune.PruneCheck(early, "val_loss", last_epoch=3)(2, {"val_loss": 0.9})
    tune.PruneCheck(last, "val_loss", last_epoch=3)(3, {"val_loss": 0.9})  # trained to the end: it completes
    assert last.user_attrs["epochs"] == 3


def test_the_report_picks_a_complete_trial_over_a_better_pruned_one(tmp_path):
    study = optuna.create_study(direction="minimize")
    pruned = study.ask()
    pruned.report(0.1, 1)  # its last value beats the complete trial's, but it never finished
    study.tell(pruned, state=TrialState.PRUNED)
    complete = study.ask()
    study.tell(complete, 0.5)

    assert best_trial(study).number == complete.number
    lines = summary_lines(study, "val_loss", tmp_path / "models" / "x", "sqlite:///s.db", tmp_path / "log")
    assert [line for line in lines if line.startswith("Best:")] == \
        [f"Best: trial {complete.number} (x), val_loss 0.5; "]


# ---- trackers -------------------------------------------------------------------------------------------------


class FailingTracker:
    """A tracker whose server went away after the run started: every log call raises."""

    calls = 0

    def __init__(self, args):
        pass

    def connect(self, save_root, experiment):
        pass

    def log_scalars(self, scalars, step):
        FailingTracker.calls += 1
        raise ConnectionError("server gone")


def test_a_failing_tracker_warns_once_and_is_dropped(tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(specs.KNOWN, "failing", f"{__name__}:FailingTracker")  # the registry of tracker names
    monkeypatch.setattr(FailingTracker, "calls", 0)
    trackers = TrackerSet(["failing"])
    trackers.connect(tmp_path, "experiment")
    sink = MetricsSink(trackers=trackers)  # the tracker is the sink's one peer
    with caplog.at_level(logging.WARNING, logger="trackers"):
        for step in range(5):
            sink.log({"loss": 1.0 / (step + 1)}, step)

    assert FailingTracker.calls == 1
    warnings = [r.getMessage() for r in caplog.records if r.name == "trackers"]
    assert len(warnings) == 1 and "tracker failing failed (ConnectionError: server gone)" in warnings[0]
    assert trackers.active == []


# ---- misspelt lr_scheduler keys -------------------------------------------------------------------------------


def test_a_swapped_pair_of_letters_suggests_the_word_it_spells():
    assert did_you_mean("stpe", ("type", "args", "step")) == ["step"]
    assert did_you_mean("tpye", ("type", "args", "step")) == ["type"]
    assert did_you_mean("clipgrad", ["clip_grad_norm", "compile"]) == ["clip_grad_norm"]
    assert did_you_mean("anything", []) == []


@pytest.mark.parametrize("typo, fix", [("stpe", "step"), ("arg", "args")])
def test_a_misspelt_lr_scheduler_key_is_one_line_naming_the_right_one(typo, fix, tmp_path, synthetic_data_dir,
                                                                       monkeypatch, capsys):

    config = shrink_config(tmp_path, synthetic_data_dir)
    scheduler = config["lr_scheduler"]
    if typo == "arg":
        scheduler["arg"] = scheduler.pop("args")
    else:
        scheduler["stpe"] = "batch"  # silently ignored, the scheduler would step per epoch
    code, _, err = run_cli("train", ["-c", write_config(tmp_path, config)], monkeypatch, capsys)

    assert code == 2
    [line] = err.splitlines()
    assert f"unknown key lr_scheduler.{typo}; did you mean lr_scheduler.{fix}?" in line
    assert not (tmp_path / "saved").exists()
