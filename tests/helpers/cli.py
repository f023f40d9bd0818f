"""The entry points run as a user runs them: in this process (a subprocess costs ~3 s of imports) or as a
process of their own, when the contract is about the process (exit code, stderr, signals)."""
import importlib
import os
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

from tests.helpers.paths import REPO


class CliResult(NamedTuple):
    """What run_cli saw: named as in subprocess.CompletedProcess (one_error_line reads both), unpacked as a tuple."""

    returncode: int | None
    stdout: str | None
    stderr: str | None


def run_cli(script, argv, monkeypatch, capture=None):
    """`python <script>.py *argv` in this process: the script's cli() with sys.argv set.

    Returns (returncode, stdout, stderr): SystemExit's code (0 when cli() returns), and what it printed when
    `capture` (pytest's capsys or capfd) is given, else None.
    """
    entry = importlib.import_module(script)
    monkeypatch.setattr(sys, "argv", [f"{script}.py", *map(str, argv)])
    if capture is not None:
        capture.readouterr()  # only what this run prints
    try:
        entry.cli()
        code = 0
    except SystemExit as stop:
        code = stop.code
    printed = capture.readouterr() if capture is not None else None
    return CliResult(code, printed and printed.out, printed and printed.err)


def run_script(script, *args, cwd=REPO, timeout=300, env=None):
    """Run one of the entry points (train.py, test.py, new_project.py) as a user would."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run([sys.executable, str(Path(cwd) / script), *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, env=full_env)


def train_in_process(*argv):
    """Run train.py's main in this process (faster than a subprocess); return the ConfigParser.

    Not the CLI: errors propagate as exceptions, for tests that look at them or at the returned config."""
    import train

    config = train.parse_args([str(a) for a in argv])
    train.main(config)
    return config
