"""metrics.csv: one row per epoch; its new content is saved with the epoch's checkpoints, as one commit."""
from pathlib import Path


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
