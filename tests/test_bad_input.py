"""Every mistake a user can make ends with one line on stderr, exit code 2, no traceback,
no run folder and nothing overwritten.

Most cases call `train.cli()` in this process (a subprocess costs ~3 s of imports);
a few run `python train.py` for real, since the contract is about the process.
"""
import os
import subprocess
import sys

import pytest

from tests.bad_input_cases import CASES
from tests.conftest import REPO, shrink_config

SUBPROCESS_CASES = ("config-invalid-json", "flag-bs-negative", "resume-other-arch")


def start_script(script, *args):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, str(REPO / script), *args], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


# ---- checking the outcome -----------------------------------------------------


def _snapshot(root):
    """Every file (bytes, mtime) and folder under root: what 'nothing created or overwritten' compares."""
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) if p.is_file() else "folder" for p in root.rglob("*")}


def _prepare(case_id, tmp_path, data_dir):
    build, expected = CASES[case_id]
    config = shrink_config(tmp_path, data_dir)
    argv = [str(a) for a in build(tmp_path, config)]
    return argv, expected


def _check_outcome(code, stderr, expected, before, tmp_path):
    lines = stderr.splitlines()
    assert code == 2, stderr
    assert "Traceback" not in stderr
    assert len(lines) == 1, f"want exactly one line on stderr, got: {stderr!r}"
    assert lines[0].startswith("error: ")
    for part in expected:
        assert part in lines[0], f"{part!r} missing from: {lines[0]}"
    assert _snapshot(tmp_path) == before, "a file or folder was created, changed or removed"


def run_cli_in_process(argv, monkeypatch, capsys):
    """train.cli() as `python train.py *argv` would run it; return (exit code, stderr)."""
    import train

    monkeypatch.setattr(sys, "argv", ["train.py", *argv])
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        train.cli()
    return exit_info.value.code, capsys.readouterr().err


@pytest.mark.parametrize("case_id", list(CASES))
def test_bad_input_in_process(case_id, tmp_path, synthetic_data_dir, monkeypatch, capsys):
    argv, expected = _prepare(case_id, tmp_path, synthetic_data_dir)
    before = _snapshot(tmp_path)
    code, stderr = run_cli_in_process(argv, monkeypatch, capsys)
    _check_outcome(code, stderr, expected, before, tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_unreadable_config(tmp_path, small_config, monkeypatch, capsys):
    small_config.chmod(0)
    before = _snapshot(tmp_path)
    code, stderr = run_cli_in_process(["-c", str(small_config)], monkeypatch, capsys)
    _check_outcome(code, stderr, ["cannot read config file", "permissions"], before, tmp_path)


@pytest.mark.slow
def test_bad_input_as_a_process(tmp_path, synthetic_data_dir):
    """A few cases as real `python train.py` processes, started together to share the import time."""
    cases = {}
    for case_id in SUBPROCESS_CASES:
        case_dir = tmp_path / case_id
        case_dir.mkdir()
        argv, expected = _prepare(case_id, case_dir, synthetic_data_dir)
        cases[case_id] = (case_dir, expected, _snapshot(case_dir), start_script("train.py", *argv))
    for case_dir, expected, before, process in cases.values():
        _, stderr = process.communicate(timeout=60)
        _check_outcome(process.returncode, stderr, expected, before, case_dir)
