"""A study's own files (docs/search.md, "Faults"): a study database that is not one, or cannot be written, is one
line at once; run folders <study>-trial<k> that another study made are refused before any trial."""
import json
import time

import pytest

import tune  # noqa: F401  (imported before the clock starts: the check itself is timed)
from tests.helpers.cli import run_cli
from tests.helpers.tmpfs import remount_read_only, tmpfs
from tests.helpers.tune_setup import load_study, tune_config, write


def runs_dir(tmp_path):
    return tmp_path / "saved" / "models" / "Mnist_LeNet"


@pytest.fixture
def study_file(request, tmp_path):
    """A file that is not a database, or a real study database on a disk mounted read-only (root, as these tests
    run, ignores a file's own read-only bit)."""
    if request.param == "garbage":
        path = tmp_path / "s.db"
        path.write_bytes(b"not a database, " * 400)
        yield path
        return
    import optuna

    with tmpfs(tmp_path / "db", "4m") as folder:
        storage = optuna.storages.RDBStorage(f"sqlite:///{folder / 's.db'}")
        optuna.create_study(storage=storage, study_name="s")
        storage.engine.dispose()  # the file closed: a disk with an open file to write is not remounted read-only
        remount_read_only(folder)
        yield folder / "s.db"


@pytest.mark.parametrize("study_file, expected", [
    ("garbage", "cannot hold a study: file is not a database; move it away, or give another --storage"),
    ("read-only", "cannot hold a study: attempt to write a readonly database; make it writable, or give another "
                  "--storage")], indirect=["study_file"])
def test_a_study_file_that_cannot_hold_a_study_is_one_line_at_once(study_file, expected, tmp_path,
                                                                     synthetic_data_dir, monkeypatch, capsys):
    path = study_file
    config = tune_config(tmp_path, synthetic_data_dir, trainer={"epochs": 1}, storage=f"sqlite:///{path}")
    started = time.monotonic()
    code, _, err = run_cli("tune", ["-c", write(tmp_path, config)], monkeypatch, capsys)
    assert code == 2 and err.count("\n") == 1 and f"error: the study's SQLite file {path} " in err, err
    assert expected in err
    assert time.monotonic() - started < 8  # Optuna's own retries take 11 s on average, then name the wrong problem
    assert not runs_dir(tmp_path).exists()


def first_study(tmp_path, synthetic_data_dir, monkeypatch, capsys):
    """A finished study s of one trial in the default storage; returns its config."""
    config = tune_config(tmp_path, synthetic_data_dir, trainer={"epochs": 1}, trials=1)
    code, _, err = run_cli("tune", ["-c", write(tmp_path, config)], monkeypatch, capsys)
    assert code == 0, err
    return config


@pytest.mark.parametrize("where", ["another storage", "its database deleted"])
def test_a_same_named_study_refuses_the_first_ones_trial_folders(where, tmp_path, synthetic_data_dir, monkeypatch,
                                                                  capsys):
    """The trial folders are named from the study name alone: a second study s (same seed, so the same first point)
    would continue s-trial0 as its own trial 0."""
    config = first_study(tmp_path, synthetic_data_dir, monkeypatch, capsys)
    if where == "another storage":
        config["tune"]["storage"] = f"sqlite:///{tmp_path / 'other.db'}"
    else:
        (tmp_path / "saved" / "tune" / "s.db").unlink()
    before = (runs_dir(tmp_path) / "s-trial0" / "metrics.csv").read_bytes()
    code, _, err = run_cli("tune", ["-c", write(tmp_path, config)], monkeypatch, capsys)
    assert code == 2 and err.count("\n") == 1, err
    assert f"error: run folder {runs_dir(tmp_path) / 's-trial0'} is not a trial of study s in sqlite:///" in err
    assert "none of its trials made it" in err and "name another study with --study" in err
    assert load_study(config).trials == []  # refused before any trial
    assert (runs_dir(tmp_path) / "s-trial0" / "metrics.csv").read_bytes() == before


def test_a_trial_folder_holding_another_run_than_its_trial_recorded_is_refused(tmp_path, synthetic_data_dir,
                                                                              monkeypatch, capsys):
    config = first_study(tmp_path, synthetic_data_dir, monkeypatch, capsys)
    folder = runs_dir(tmp_path) / "s-trial0"
    (trial,) = load_study(config).trials
    assert trial.user_attrs["run_uid"] == json.loads((folder / "run.json").read_text())["run_uid"]
    (folder / "run.json").write_text(json.dumps({"origin": None, "run_uid": "another-run"}))  # another run's folder
    code, _, err = run_cli("tune", ["-c", write(tmp_path, config), "--trials", "2"], monkeypatch, capsys)
    assert code == 2 and err.count("\n") == 1 and "it holds another run than the one its trial trained" in err, err
    assert len(load_study(config).trials) == 1


def test_a_trial_whose_folder_another_run_took_meanwhile_is_refused(tmp_path):
    """Between the check before the trials and a trial's start, another study's worker made the folder."""
    import optuna

    from search.trial_runs import check_trial_run
    from utils.errors import UserError

    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 's.db'}", study_name="s")
    trial = study.ask()
    folder = tmp_path / "s-trial0"
    check_trial_run(trial, folder, retry=False)  # no folder yet: its own
    folder.mkdir()
    (folder / "run.json").write_text(json.dumps({"origin": None, "run_uid": "theirs"}))
    with pytest.raises(UserError, match="holds a run that trial 0 did not start"):
        check_trial_run(trial, folder, retry=False)
    trial.set_user_attr("run_uid", "theirs")  # a retry of the trial that made it
    check_trial_run(trial, folder, retry=True)
