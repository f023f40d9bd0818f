"""Every mistake a user can make ends with one line on stderr, exit code 2, no traceback,
no run folder and nothing overwritten.

Most cases call `train.cli()` in this process (a subprocess costs ~3 s of imports);
a few run `python train.py` for real, since the contract is about the process.
"""
import os
import subprocess
import sys

import pytest

from tests.helpers.bad_input_cases import CASES
from tests.helpers.cli import run_cli
from tests.helpers.configs import shrink_config
from tests.helpers.errors import check_refused
from tests.helpers.paths import REPO
from tests.helpers.skips import skip_as_root
from tests.helpers.snapshots import snapshot_bytes_and_mtimes

SUBPROCESS_CASES = ("config-invalid-json", "flag-bs-negative", "resume-other-arch")


def start_script(script, *args):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, str(REPO / script), *args], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _prepare(case_id, tmp_path, data_dir):
    build, expected = CASES[case_id]
    config = shrink_config(tmp_path, data_dir)
    argv = [str(a) for a in build(tmp_path, config)]
    return argv, expected


@pytest.mark.parametrize("case_id", list(CASES))
def test_bad_input_in_process(case_id, tmp_path, synthetic_data_dir, monkeypatch, capsys):
    argv, expected = _prepare(case_id, tmp_path, synthetic_data_dir)
    before = snapshot_bytes_and_mtimes(tmp_path)
    check_refused(run_cli("train", argv, monkeypatch, capsys), expected, before, tmp_path)


@skip_as_root
def test_unreadable_config(tmp_path, small_config, monkeypatch, capsys):
    small_config.chmod(0)
    before = snapshot_bytes_and_mtimes(tmp_path)
    result = run_cli("train", ["-c", str(small_config)], monkeypatch, capsys)
    check_refused(result, ["cannot read config file", "permissions"], before, tmp_path)


@pytest.mark.slow
def test_bad_input_as_a_process(tmp_path, synthetic_data_dir):
    """A few cases as real `python train.py` processes, started together to share the import time."""
    cases = {}
    for case_id in SUBPROCESS_CASES:
        case_dir = tmp_path / case_id
        case_dir.mkdir()
        argv, expected = _prepare(case_id, case_dir, synthetic_data_dir)
        cases[case_id] = (case_dir, expected, snapshot_bytes_and_mtimes(case_dir), start_script("train.py", *argv))
    for case_dir, expected, before, process in cases.values():
        out, err = process.communicate(timeout=60)
        result = subprocess.CompletedProcess(process.args, process.returncode, out, err)
        check_refused(result, expected, before, case_dir)
