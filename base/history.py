"""metrics.csv: one row per epoch, replaced atomically so a crash keeps the rows so far."""
from pathlib import Path

from utils.atomic import atomic_write


def append_epoch_row(csv_path, row):
    """Add `row` (a dict with an 'epoch' key) to the csv, replacing rows of that epoch or later.

    Replacing later rows is what makes a resumed run continue the file without
    duplicates.
    """
    import pandas as pd  # imported on first use: it is slow to import

    csv_path = Path(csv_path)
    new = pd.DataFrame([row])
    if csv_path.is_file() and csv_path.stat().st_size > 0:
        old = pd.read_csv(csv_path)
        old = old[old["epoch"] < row["epoch"]]
        new = pd.concat([old, new], ignore_index=True) if len(old) else new
    atomic_write(csv_path, lambda handle: new.to_csv(handle, index=False), binary=False)
