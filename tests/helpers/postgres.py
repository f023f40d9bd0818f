"""A throwaway PostgreSQL server for the tune.py tests: Debian's `postgresql` binaries, a cluster
in a temporary folder, a unix socket only (no TCP port), run as a non-root user, stopped after.
The superuser logs in without a password; every other role must give its password (scram-sha-256),
so a test can connect as a user would, with the password in the URL. A test may make the database
blink: restart it (pg_ctl restart -m fast) or stop it for some seconds, as an operator would.

Skips with the reason when the binaries are missing (CI installs them: apt-get install -y postgresql).
"""
import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

USER = "tune"  # the database superuser the cluster is made with
# first match wins: the superuser (the fixture itself) is trusted, any other role needs its password
ACCESS_RULES = f"local all {USER} trust\nlocal all all scram-sha-256\n"


NO_POSTGRESQL = "PostgreSQL binaries (initdb, pg_ctl) not found; install them with apt-get install -y postgresql"


def postgresql_bin_dir():
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb and shutil.which("pg_ctl") else None


def _as_server_user(root):
    """How to run a command as the server's owner: PostgreSQL refuses to run as root."""
    if os.geteuid() != 0:
        return []
    for name in ("postgres", "nobody"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        os.chown(root, entry.pw_uid, entry.pw_gid)
        return ["runuser", "-u", name, "--"]
    pytest.skip("PostgreSQL must run as a non-root user, and neither 'postgres' nor 'nobody' exists")


@contextlib.contextmanager
def postgres_server():
    """A server for the time of the `with`: yields a function that creates a fresh database and returns its
    postgresql:// URL (the fixture postgres, tests/conftest.py); its .restart() and .stop_for(seconds) make
    the server blink."""
    bin_dir = postgresql_bin_dir()
    if bin_dir is None:
        pytest.skip(NO_POSTGRESQL)
    pytest.importorskip("psycopg", reason="the PostgreSQL driver is missing: pip install 'psycopg[binary]'")
    root = Path(tempfile.mkdtemp(prefix="pg-"))  # short: a unix socket path has at most 107 bytes
    root.chmod(0o700)
    run_as = _as_server_user(root)

    def server(*args):
        subprocess.run([*run_as, str(bin_dir / args[0]), *args[1:]], check=True, capture_output=True, timeout=60)

    def start():
        server("pg_ctl", "-D", str(root / "data"), "-l", str(root / "log"), "-w", "-t", "30", "start",
               "-o", f"-k {root} -c listen_addresses='' -F")

    try:
        server("initdb", "-D", str(root / "data"), "-U", USER, "--auth=trust", "--no-sync")
        (root / "data" / "pg_hba.conf").write_text(ACCESS_RULES)
        start()
    except subprocess.CalledProcessError as err:
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(f"PostgreSQL did not start: {err.stderr.decode()[-2000:]}")

    def new_database(password=None):
        """A new database's URL: the superuser's, or (`password`) that of a new role that owns it and must
        log in with the password, which the URL holds: postgresql://<role>:<password>@/<db>?host=..."""
        import psycopg

        name = "t" + uuid.uuid4().hex[:12]
        user = USER if password is None else f"r{name}"
        with psycopg.connect(f"host={root} user={USER} dbname=postgres", autocommit=True) as connection:
            if password is not None:
                connection.execute(f"CREATE ROLE {user} LOGIN PASSWORD '{password}'")
            connection.execute(f"CREATE DATABASE {name} OWNER {user}")
        return f"postgresql://{user}{'' if password is None else ':' + password}@/{name}?host={root}"

    def stop():  # fast: every open connection is cut, as in a failover or an operator's restart
        server("pg_ctl", "-D", str(root / "data"), "-m", "fast", "-w", "stop")

    def stop_for(seconds):
        """The database gone for `seconds`: connections cut, new ones refused, then back."""
        stop()
        time.sleep(seconds)
        start()

    new_database.restart = lambda: server("pg_ctl", "-D", str(root / "data"), "-l", str(root / "log"), "-m",
                                          "fast", "-w", "-t", "30", "restart")
    new_database.stop_for = stop_for
    try:
        yield new_database
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):  # already stopped by a test that failed mid-outage
            stop()
        shutil.rmtree(root, ignore_errors=True)
