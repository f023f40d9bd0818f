"""config.json and metrics.csv are replaced whole or not at all: a write that fails midway
leaves the previous file byte for byte, and no temp file beside it."""
from pathlib import Path

import pandas as pd
import pytest

from runs.history import history_with_row
from runs.journal import write_files
from utils.util import write_json


class NotJson:
    """A value json cannot encode: serialisation fails after the text before it was written."""


def append_epoch_row(csv_path, row):
    """Add `row` to the csv on disk, atomically, as the trainer's save does."""
    write_files(Path(csv_path).parent, [(Path(csv_path).name, history_with_row(csv_path, row))])


def half_written_config(tmp_path):
    """A good config.json, then a write_json of content that fails halfway through encoding."""
    path = tmp_path / "config.json"
    write_json({"name": "before", "epochs": 3}, path)
    before = path.read_bytes()
    # the long value comes first: json.dump writes it out (past any buffer) before reaching NotJson
    with pytest.raises(TypeError, match="not JSON serializable"):
        write_json({"padding": "x" * 100_000, "bad": NotJson()}, path)
    return path, before


def test_write_json_failing_midway_keeps_the_old_file(tmp_path):
    path, before = half_written_config(tmp_path)
    assert path.read_bytes() == before


def test_write_json_failing_midway_leaves_no_temp_file(tmp_path):
    half_written_config(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]


def half_written_csv(tmp_path, monkeypatch):
    """metrics.csv with two epochs, then an append whose to_csv writes part of a line and fails."""
    path = tmp_path / "metrics.csv"
    for epoch in (1, 2):
        append_epoch_row(path, {"epoch": epoch, "loss": 1.0 / epoch})
    before = path.read_bytes()

    def to_csv_that_fails(self, path_or_buf=None, *args, **kwargs):
        if isinstance(path_or_buf, str) or hasattr(path_or_buf, "__fspath__"):
            with open(path_or_buf, "w") as handle:
                handle.write("epoch,loss\n1,0.")
        elif path_or_buf is not None:
            path_or_buf.write("epoch,loss\n1,0.")
        raise OSError("simulated: no space left on device")
    monkeypatch.setattr(pd.DataFrame, "to_csv", to_csv_that_fails)
    with pytest.raises(OSError, match="no space left"):
        append_epoch_row(path, {"epoch": 3, "loss": 0.25})
    monkeypatch.undo()
    return path, before


def test_append_epoch_row_failing_midway_keeps_the_old_file(tmp_path, monkeypatch):
    path, before = half_written_csv(tmp_path, monkeypatch)
    assert path.read_bytes() == before
    assert pd.read_csv(path)["epoch"].tolist() == [1, 2]


def test_append_epoch_row_failing_midway_leaves_no_temp_file(tmp_path, monkeypatch):
    half_written_csv(tmp_path, monkeypatch)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.csv"]
