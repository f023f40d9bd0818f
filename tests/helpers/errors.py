"""The contract for every mistake a user can make: one line on stderr that starts with `error: `, the exit code,
no traceback, and (for a refusal) nothing created or overwritten."""
from tests.helpers.snapshots import snapshot_bytes_and_mtimes


def one_error_line(result, code):
    """The one error line of a finished run (a subprocess.CompletedProcess, or run_cli's result)."""
    assert result.returncode == code, (result.stdout or "")[-1500:] + (result.stderr or "")[-1500:]
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def check_refused(result, expected, before, root):
    """Exit code 2, one error line holding each of `expected`, and `root` as `before` (snapshot_bytes_and_mtimes)."""
    stderr = result.stderr
    lines = stderr.splitlines()
    assert result.returncode == 2, stderr
    assert "Traceback" not in stderr
    assert len(lines) == 1, f"want exactly one line on stderr, got: {stderr!r}"
    assert lines[0].startswith("error: ")
    for part in expected:
        assert part in lines[0], f"{part!r} missing from: {lines[0]}"
    assert snapshot_bytes_and_mtimes(root) == before, "a file or folder was created, changed or removed"
