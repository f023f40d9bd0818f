"""The study's SQLite file (tune.py), opened once before Optuna opens it. Optuna reads a file that is not a
database, or one it cannot write (a read-only file or disk), as a creation race to retry, and after some 12 s
says "invalid data in the commit, e.g. exceeding max length"; this says what is wrong with the file, at once."""
import sqlite3
from pathlib import Path

import sqlalchemy

from utils.errors import UserError

BUSY_WAIT = 60  # seconds: another worker writing the study is no fault of the file


def check_study_file(url, shown_url):
    """A UserError (one line) when the SQLite file of `url` cannot hold a study; nothing for other databases."""
    parsed = sqlalchemy.engine.make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database.startswith("file:"):
        return
    path = Path(parsed.database)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError:
        return  # open_storage says why the folder cannot be made
    try:
        _write_nothing(path)
    except sqlite3.DatabaseError as err:
        problem = str(err)
        if "locked" in problem or "busy" in problem:
            return  # a worker holds it longer than BUSY_WAIT: Optuna waits and retries as it does for any race
        fix = "make it writable" if "readonly" in problem else "move it away"
        raise UserError(f"the study's SQLite file {path} ({shown_url}) cannot hold a study: {problem}; {fix}, "
                        "or give another --storage") from None


def _write_nothing(path):
    """Read the file's schema, then write to it and roll back: a read-only file or disk fails the write."""
    connection = sqlite3.connect(path, timeout=BUSY_WAIT, isolation_level=None)
    try:
        connection.execute("SELECT count(*) FROM sqlite_master").fetchall()
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        connection.execute("BEGIN IMMEDIATE")
        connection.execute(f"PRAGMA user_version = {int(version)}")
        connection.execute("ROLLBACK")
    finally:
        connection.close()
