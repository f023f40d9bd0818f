"""tune.py on PostgreSQL with a password in --storage, as a user would type it: the password is in
no printed line, no file under the save folder and nothing the study stores; a wrong password is
one line without it. The test server makes the role log in with its password (scram-sha-256)."""
import json

import optuna
import pytest

from search.storage import storage_url
from tests.helpers.skips import needs_postgresql
from tests.helpers.tune_setup import start_tune, tune_config, write

PASSWORD = "Pw-7f3kq9Zx"


def files_holding(folder, secret):
    return sorted(str(p) for p in folder.rglob("*") if p.is_file() and secret.encode() in p.read_bytes())


@pytest.mark.slow
@needs_postgresql
def test_the_storage_password_is_in_no_line_and_no_file(tmp_path, synthetic_data_dir, postgres):
    url = postgres(password=PASSWORD)
    config = tune_config(tmp_path, synthetic_data_dir, trainer={"epochs": 1, "tensorboard": True})
    worker = start_tune(write(tmp_path, config), "--storage", url)
    out, err = worker.communicate(timeout=300)
    assert worker.returncode == 0, out[-2000:] + err[-2000:]
    assert PASSWORD not in out + err
    shown = storage_url(url, None, "s").replace(PASSWORD, "***")
    assert f"Dashboard:    optuna-dashboard {shown}  (your password in place of ***)" in out
    assert files_holding(tmp_path / "saved", PASSWORD) == []
    run = tmp_path / "saved" / "models" / "Mnist_LeNet" / "s-trial0"
    provenance = json.loads((run / "provenance.json").read_text())
    assert provenance["tune"]["storage"] == shown and url.replace(PASSWORD, "***") in provenance["command"]
    study = optuna.load_study(study_name="s", storage=storage_url(url, None, "s"))
    assert len(study.trials) == 2 and study.metric_names == ["val_loss"]
    assert database_rows_holding(url, PASSWORD) == []


def database_rows_holding(url, secret):
    """Every row of every table of the study's database, as text, that holds `secret`."""
    import psycopg

    with psycopg.connect(url) as connection:
        tables = [name for (name,) in connection.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        assert "trials" in tables and "studies" in tables
        return [row for table in tables for (row,) in connection.execute(f"SELECT t::text FROM {table} t")
                if secret in row]


@pytest.mark.slow
@needs_postgresql
def test_a_wrong_password_is_one_line_without_it(tmp_path, synthetic_data_dir, postgres):
    url = postgres(password=PASSWORD).replace(PASSWORD, "Wrong-" + PASSWORD)
    worker = start_tune(write(tmp_path, tune_config(tmp_path, synthetic_data_dir)), "--storage", url)
    out, err = worker.communicate(timeout=120)
    assert worker.returncode == 2 and err.count("\n") == 1, err
    assert err.startswith("error: cannot reach the study storage postgresql+psycopg://") and ":***@/" in err
    assert "password authentication failed" in err and PASSWORD not in out + err
