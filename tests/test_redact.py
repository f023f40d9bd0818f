"""Secrets never leave the command line: one redact() shows a URL's password as *** in every place a
run prints or records it (provenance, error lines, log records, HParams, trackers' params and ids)."""
import json
import logging
import sys

import pytest

from utils.redact import redact, redact_all

SECRET = "Pw-7f3kq9Zx"


@pytest.mark.parametrize("text, shown", [
    (f"postgresql+psycopg://tuner:{SECRET}@db:5432/studies", "postgresql+psycopg://tuner:***@db:5432/studies"),
    (f"https://me:{SECRET}@mlflow.example/api", "https://me:***@mlflow.example/api"),
    (f"postgresql://u@h/db?password={SECRET}&sslmode=require", "postgresql://u@h/db?password=***&sslmode=require"),
    (f"host=h user=u password={SECRET}", "host=h user=u password=***"),
    (f"--storage postgresql://u:p@ss{SECRET}@h/d --trials 2", "--storage postgresql://u:***@h/d --trials 2"),
    ("postgresql://tune@/db?host=/tmp/pg-1", "postgresql://tune@/db?host=/tmp/pg-1"),  # no password: unchanged
    ("http://127.0.0.1:5000/api", "http://127.0.0.1:5000/api"),  # a port is no password
    ("sqlite:////tmp/saved/tune/s.db", "sqlite:////tmp/saved/tune/s.db"),
])
def test_redact_hides_the_password_and_keeps_the_rest(text, shown):
    assert redact(text) == shown


def test_redact_all_walks_lists_and_dicts():
    value = {"command": ["tune.py", "--storage", f"postgresql://u:{SECRET}@h/d"], "n": 3, "flag": True}
    assert redact_all(value) == {"command": ["tune.py", "--storage", "postgresql://u:***@h/d"], "n": 3, "flag": True}


def test_provenance_records_the_command_and_notes_without_the_password(monkeypatch):
    from utils import provenance

    monkeypatch.setattr(sys, "argv", ["tune.py", "-c", "c.json", "--storage", f"postgresql://u:{SECRET}@h/d"])
    record = provenance.collect_provenance(notes={"tune": {"storage": f"postgresql+psycopg://u:{SECRET}@h/d"}})
    assert record["command"][1:] == ["tune.py", "-c", "c.json", "--storage", "postgresql://u:***@h/d"]
    assert record["tune"]["storage"] == "postgresql+psycopg://u:***@h/d"


def test_error_lines_and_log_records_show_no_password(tmp_path, capsys):
    from logger.logger import setup_logging
    from utils.errors import print_line

    print_line(f"error: cannot reach the study storage postgresql://u:{SECRET}@h/d: refused")
    setup_logging(tmp_path, to_file=True)
    logging.getLogger("t").info("storage %s", f"postgresql://u:{SECRET}@h/d")
    logging.shutdown()
    out = capsys.readouterr()
    assert out.err == "error: cannot reach the study storage postgresql://u:***@h/d: refused\n"
    assert out.out == "storage postgresql://u:***@h/d\n"
    assert (tmp_path / "info.log").read_text().endswith(" - t - INFO - storage postgresql://u:***@h/d\n")


def test_hparams_and_tracker_params_show_no_password(tmp_path):
    from logger.hparams import hparam_values
    from parse_config import ConfigParser
    from runs.tracking import run_info

    uri = f"https://me:{SECRET}@mlflow.example"
    config = {"name": "n", "trainer": {"trackers": [{"type": "mlflow", "args": {"tracking_uri": uri}}]}}
    assert hparam_values(config)["trainer.trackers"] == str([{"type": "mlflow", "args": {
        "tracking_uri": "https://me:***@mlflow.example"}}])

    trainer = {**config["trainer"], "epochs": 1, "save_dir": str(tmp_path)}
    info = run_info(ConfigParser({**config, "trainer": trainer}), 1)
    assert SECRET not in json.dumps(info.config) and "https://me:***@mlflow.example" in json.dumps(info.config)


def test_a_tracker_warning_and_trackers_json_show_no_password(tmp_path, caplog):
    pytest.importorskip("mlflow")
    from logger.trackers.mlflow_tracker import MlflowTracker
    from logger.trackers.tracker_set import TrackerSet

    trackers = TrackerSet([{"type": "mlflow", "args": {"tracking_uri": f"http://me:{SECRET}@127.0.0.1:9"}}])
    with caplog.at_level(logging.WARNING):
        trackers.connect(tmp_path, "n")
    (warning,) = [r.getMessage() for r in caplog.records if "tracker mlflow" in r.getMessage()]
    assert "cannot be reached" in warning and SECRET not in warning

    tracker = MlflowTracker({"tracking_uri": f"sqlite:///{tmp_path / 'm.db'}"})
    tracker.uri = f"http://me:{SECRET}@mlflow.example"  # what open() stores in trackers.json, and compares
    tracker.run_id = "abc"
    assert tracker._existing_run({"run_id": "abc", "tracking_uri": "http://me:***@mlflow.example"}, "f") == "abc"
    assert tracker.where()[0] == "MLflow: run abc in http://me:***@mlflow.example"
