"""What trains is what is recorded, and a run trusts only its own files (issue 25, cases 10 and 15): a resume
with another lr or optimizer arg trains at it; every run has an identity (run.json's run_uid, stored in each
checkpoint it saves), and a checkpoint of another run found in its folder is skipped or refused; `recover`
moves nothing outside its folder."""
import json
import shutil

import pandas as pd
import pytest
import torch

from runs.journal import JOURNAL, as_recovered, recover
from tests.helpers.cli import run_cli
from tests.helpers.configs import shrink_config, write_config
from tests.helpers.errors import check_refused
from tests.helpers.runs import named, run_dirs, same_weights, weights
from tests.helpers.snapshots import snapshot_bytes_and_mtimes


def info_log(tmp_path, run):
    return (tmp_path / "saved" / "log" / run.parent.name / run.name / "info.log").read_text()


def lr_of(run, epoch):
    history = pd.read_csv(run / "metrics.csv")
    return float(history.loc[history["epoch"] == epoch, "lr"].iloc[0])


def saved(path):
    return torch.load(path, weights_only=True)


# ---- 10. -r with another lr or optimizer arg --------------------------------------------------
def test_a_resume_with_a_new_lr_and_weight_decay_trains_at_them(tmp_path, synthetic_data_dir, monkeypatch):
    config = write_config(tmp_path, shrink_config(tmp_path, synthetic_data_dir, epochs=2))
    assert run_cli("train", ["-c", config], monkeypatch).returncode == 0
    (run,) = run_dirs(tmp_path / "saved")
    assert lr_of(run, 2) == 0.001
    resumed = run_cli("train", ["-r", run / "model_latest.pth", "--lr", "0.01", "-o", "trainer.epochs=3",
                                "-o", "optimizer.args.weight_decay=0.5"], monkeypatch)
    assert resumed.returncode == 0
    recorded = json.loads((run / "config.json").read_text())["optimizer"]["args"]
    assert recorded["lr"] == 0.01 and recorded["weight_decay"] == 0.5
    assert lr_of(run, 3) == 0.01  # what metrics.csv says trained
    (group,) = saved(run / "model_latest.pth")["optimizer"]["param_groups"]
    assert group["lr"] == 0.01 and group["weight_decay"] == 0.5  # what the optimizer holds
    log = info_log(tmp_path, run)
    assert "optimizer.args.lr changed from 0.001 to 0.01" in log
    assert "optimizer.args.weight_decay changed from 0 to 0.5" in log


def test_a_new_lr_goes_on_along_the_schedule(tmp_path, synthetic_data_dir, monkeypatch):
    """StepLR halving every epoch: after 2 epochs at lr 0.001, a resume at 0.01 trains epoch 3 at 0.01 / 4,
    as a run with lr 0.01 from the start would, and the scheduler's base is the new lr."""
    cfg = shrink_config(tmp_path, synthetic_data_dir, epochs=2)
    cfg["lr_scheduler"]["args"].update(step_size=1, gamma=0.5)
    assert run_cli("train", ["-c", write_config(tmp_path, cfg)], monkeypatch).returncode == 0
    (run,) = run_dirs(tmp_path / "saved")
    assert lr_of(run, 2) == 0.0005
    assert run_cli("train", ["-r", run / "model_latest.pth", "--lr", "0.01", "-o", "trainer.epochs=3"],
                   monkeypatch).returncode == 0
    assert lr_of(run, 3) == pytest.approx(0.01 * 0.5 ** 2)
    checkpoint = saved(run / "model_latest.pth")
    assert checkpoint["lr_scheduler"]["base_lrs"] == [0.01]
    assert checkpoint["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.01 * 0.5 ** 3)


def test_a_resume_that_turns_on_amsgrad_gives_its_new_state_a_fresh_start(tmp_path, synthetic_data_dir, monkeypatch):
    """amsgrad reads a slot (max_exp_avg_sq) that a state saved without it lacks: a KeyError at the first step."""
    cfg = shrink_config(tmp_path, synthetic_data_dir, epochs=2)
    cfg["optimizer"]["args"]["amsgrad"] = False
    assert run_cli("train", ["-c", write_config(tmp_path, cfg)], monkeypatch).returncode == 0
    (run,) = run_dirs(tmp_path / "saved")
    before = saved(run / "model_latest.pth")["optimizer"]
    assert not any("max_exp_avg_sq" in state for state in before["state"].values())
    resumed = run_cli("train", ["-r", run / "model_latest.pth", "-o", "optimizer.args.amsgrad=true",
                                "-o", "trainer.epochs=3"], monkeypatch)
    assert resumed.returncode == 0
    after = saved(run / "model_latest.pth")["optimizer"]
    assert after["param_groups"][0]["amsgrad"] is True and after["state"].keys() == before["state"].keys()
    for key, state in after["state"].items():  # one more epoch's steps, from the saved state on
        assert state["step"] > before["state"][key]["step"] and state["max_exp_avg_sq"].shape == state["exp_avg"].shape
    assert pd.read_csv(run / "metrics.csv")["epoch"].tolist() == [1, 2, 3]
    log = info_log(tmp_path, run)
    assert "optimizer.args.amsgrad changed from false to true" in log
    assert "optimizer state max_exp_avg_sq starts afresh (zeros)" in log


# ---- 15. a stray checkpoint of another run ---------------------------------------------------
def two_runs(tmp_path, data, monkeypatch):
    """Run `a` (2 epochs, lr 0.001) and run `b` (3 epochs, lr 0.01) of one experiment, every epoch saved;
    b's checkpoint-epoch3.pth copied into a's folder, a's model_latest.pth damaged. Returns (a's config, a)."""
    config_a, a = named(tmp_path, data, "a", epochs=2, save_period=1)
    config_b, b = named(tmp_path, data, "b", epochs=3, save_period=1)
    assert run_cli("train", ["-c", config_a, "--run_id", "a"], monkeypatch).returncode == 0
    assert run_cli("train", ["-c", config_b, "--run_id", "b", "--lr", "0.01"], monkeypatch).returncode == 0
    shutil.copy(b / "checkpoint-epoch3.pth", a / "checkpoint-epoch3.pth")
    (a / "model_latest.pth").write_bytes((a / "model_latest.pth").read_bytes()[:1000])
    return config_a, a


def test_a_stray_checkpoint_of_another_run_is_skipped(tmp_path, synthetic_data_dir, monkeypatch, capfd):
    config_a, a = two_runs(tmp_path, synthetic_data_dir, monkeypatch)
    epoch2 = weights(a / "checkpoint-epoch2.pth")
    result = run_cli("train", ["-c", config_a, "--run_id", "a", "-o", "trainer.epochs=3"], monkeypatch, capfd)
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout + result.stderr
    assert f"Warning: checkpoint-epoch3.pth in {a} belongs to another run" in out
    assert "Resume training from epoch 3" in out  # from a's own epoch 2
    assert json.loads((a / "config.json").read_text())["optimizer"]["args"]["lr"] == 0.001
    assert lr_of(a, 3) == 0.001  # not b's lr
    resumed_from = saved(a / "model_latest.pth")
    assert resumed_from["epoch"] == 3 and not same_weights(resumed_from["state_dict"], epoch2)


def test_resuming_a_stray_checkpoint_in_another_runs_folder_is_refused(tmp_path, synthetic_data_dir, monkeypatch,
                                                                      capfd):
    _, a = two_runs(tmp_path, synthetic_data_dir, monkeypatch)
    before = snapshot_bytes_and_mtimes(tmp_path / "saved")
    result = run_cli("train", ["-r", a / "checkpoint-epoch3.pth"], monkeypatch, capfd)
    check_refused(result, [str(a), "another run", "copy the checkpoint into a folder of its own"], before,
                  tmp_path / "saved")


def test_a_checkpoint_copied_into_a_folder_of_its_own_keeps_its_runs_identity(tmp_path, synthetic_data_dir,
                                                                             monkeypatch):
    config, a = named(tmp_path, synthetic_data_dir, "a", epochs=1)
    assert run_cli("train", ["-c", config, "--run_id", "a"], monkeypatch).returncode == 0
    uid = json.loads((a / "run.json").read_text())["run_uid"]
    assert uid and saved(a / "model_latest.pth")["run_uid"] == uid
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copy(a / "model_latest.pth", copy / "model_latest.pth")
    assert run_cli("train", ["-r", copy / "model_latest.pth", "-o", "trainer.epochs=2"], monkeypatch).returncode == 0
    assert json.loads((copy / "run.json").read_text())["run_uid"] == uid
    assert saved(copy / "model_latest.pth")["run_uid"] == uid


def test_checkpoints_and_runs_without_an_identity_are_accepted(tmp_path, synthetic_data_dir, monkeypatch, capfd):
    """Runs made before run_uid existed: no run_uid in run.json or in the checkpoints. They resume as before."""
    config, a = named(tmp_path, synthetic_data_dir, "old", epochs=2, save_period=1)
    assert run_cli("train", ["-c", config, "--run_id", "old"], monkeypatch).returncode == 0
    for path in a.glob("*.pth"):
        checkpoint = saved(path)
        checkpoint.pop("run_uid", None)
        torch.save(checkpoint, path)
    (a / "run.json").write_text(json.dumps({"origin": None}))
    (a / "model_latest.pth").write_bytes(b"PK\x03\x04 not a zip")
    result = run_cli("train", ["-c", config, "--run_id", "old", "-o", "trainer.epochs=3"], monkeypatch, capfd)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Resume training from epoch 3" in result.stdout + result.stderr
    uid = json.loads((a / "run.json").read_text())["run_uid"]  # the run gets one now; its old checkpoints stay
    assert uid and saved(a / "model_latest.pth")["run_uid"] == uid
    assert "run_uid" not in saved(a / "checkpoint-epoch2.pth")


# ---- recover touches only plain names inside its folder ----------------------------------------
def test_a_crafted_journal_moves_nothing_outside_its_folder(tmp_path):
    """Each rename follows the journal's own pattern (name -> .name.pending), so only the name check stops it:
    `../x` would move run/.../x.pending to the parent folder, an absolute name a file under run/ to anywhere."""
    run = tmp_path / "saved" / "run"
    run.mkdir(parents=True)
    outside_x, outside_y = tmp_path / "saved" / "x", tmp_path / "y"
    renames = {"../x": ".../x.pending", str(outside_y): f".{outside_y}.pending",
               "model_latest.pth": "../.x.pending"}  # a plain name whose source lies outside
    for pending in renames.values():
        (run / pending).parent.mkdir(parents=True, exist_ok=True)
        (run / pending).write_text("not the run's")
    (run / JOURNAL).write_text(json.dumps({"rename": renames}))
    before = snapshot_bytes_and_mtimes(tmp_path)
    assert as_recovered(run) == {}
    recover(run)
    assert not outside_x.exists() and not outside_y.exists() and not (run / "model_latest.pth").exists()
    assert (tmp_path / "saved" / ".x.pending").read_text() == "not the run's"
    after = snapshot_bytes_and_mtimes(tmp_path)
    assert set(after) <= set(before) and all(after[p] == before[p] for p in after)  # nothing made or changed
