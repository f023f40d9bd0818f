"""metrics.csv: one row per epoch; its new content is saved with the epoch's checkpoints, as one commit. No torch
here: compare.py reads it too. A continued run checks its file before anything trains (runs/checks.py)."""
import csv
import io
import math
from pathlib import Path


class DamagedHistory(ValueError):
    """A metrics.csv that is not a run's history as this template writes it; the message says why (a clause)."""


def read_history(path):
    """metrics.csv as a list of {column: float}, one per epoch ([] when there is none yet); DamagedHistory when
    it is not one (another separator, an open quote, a cut line, a value that is not a number)."""
    path = Path(path)
    if not path.is_file():
        return []
    try:
        text = path.read_text(encoding="utf-8")
        lines = list(csv.reader(io.StringIO(text, newline="")))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DamagedHistory(f"cannot be read ({type(err).__name__})") from None
    if not lines or "epoch" not in lines[0]:
        raise DamagedHistory("has no epoch column (another separator than ',', or not a run's history)")
    if not text.endswith("\n"):  # every row is written whole, with its line break
        raise DamagedHistory(f"line {len(lines)} has no line break: the file is cut short")
    header, rows = lines[0], []
    for number, line in enumerate(lines[1:], start=2):
        if len(line) != len(header):
            raise DamagedHistory(f"line {number} has {len(line)} of {len(header)} fields: the file is cut short or "
                                 "damaged (an open quote, a line cut)")
        try:
            rows.append({key: float(value) if value else math.nan for key, value in zip(header, line, strict=True)})
        except ValueError:
            raise DamagedHistory(f"line {number} holds a value that is not a number: the file is corrupt") from None
    return rows


def history_with_row(csv_path, row):
    """The csv's bytes with `row` (a dict with an 'epoch' key) added, rows of that epoch or later replaced:
    a resumed run continues the file without duplicates."""
    import pandas as pd  # imported on first use: it is slow to import

    csv_path = Path(csv_path)
    new = pd.DataFrame([row])
    if csv_path.is_file() and csv_path.stat().st_size > 0:
        old = pd.read_csv(csv_path)
        old = old[old["epoch"] < row["epoch"]]
        new = pd.concat([old, new], ignore_index=True) if len(old) else new
    return new.to_csv(index=False).encode("utf-8")
