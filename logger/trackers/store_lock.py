"""The file lock that guards creating an MLflow store, kept beside the store itself.

Runs that start at the same instant on a new SQLite store each create its tables and migrate them; without
one lock they crash or leave the store half-migrated. Runs of different save_dirs may share one store
(a `tracking_uri`), so the lock belongs to the store, not to a save_dir: `<db>.lock` beside a SQLite
database, `<folder>.lock` beside a file store's folder. A server creates its own tables once: no lock.
"""
import fcntl
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote, urlparse


def store_lock_path(uri):
    """The lock file of the store at `uri`, or None (a server, an in-memory database)."""
    if uri.startswith("sqlite:"):
        from sqlalchemy.engine import make_url  # MLflow's SQL stores need it; only imported with MLflow
        database = make_url(uri).database
        if not database or database == ":memory:" or database.startswith("file:"):
            return None  # in memory, or a sqlite URI-style name this lock cannot place
        return _beside(Path(database))
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return _beside(Path(unquote(parsed.path)))
    if parsed.scheme == "" or len(parsed.scheme) == 1:  # a plain folder (or a Windows drive letter)
        return _beside(Path(uri))
    return None


def _beside(path):
    path = path.absolute()
    return path.with_name(path.name + ".lock")


@contextmanager
def store_lock(uri):
    """Hold the store's lock while MLflow creates or migrates it. A folder the lock cannot be made in (missing,
    read-only) is left to MLflow, whose own error is then the tracker's one warning."""
    path = store_lock_path(uri)
    try:
        handle = open(path, "a") if path is not None else None
    except OSError:
        handle = None
    if handle is None:
        yield
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released by the system if this process dies holding it
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
