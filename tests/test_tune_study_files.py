"""A study's own files (docs/search.md, "Faults"): a study database that is not one, or cannot be written, is one
line at once."""
import time

import pytest

import tune  # noqa: F401  (imported before the clock starts: the check itself is timed)
from tests.helpers.cli import run_cli
from tests.helpers.tmpfs import remount_read_only, tmpfs
from tests.helpers.tune_setup import tune_config, write


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
