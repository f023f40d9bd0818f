"""new_project.py: a new project from the template, and that project working on its own."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.cli import run_script
from tests.helpers.paths import REPO
from tests.helpers.runs import run_dirs

NEVER_COPIED = {".git", "__pycache__", ".pytest_cache", ".ruff_cache", ".venv", "venv", ".benchmarks"}


def tracked_files():
    listed = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z"], capture_output=True, check=True)
    return {Path(name) for name in listed.stdout.decode().split("\0") if name and (REPO / name).is_file()}


def files_under(root):
    return {p.relative_to(root) for p in root.rglob("*") if p.is_file()}


def start_in(project, *argv):
    """A process in the new project, with nothing of this checkout on its path."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.Popen([sys.executable, *map(str, argv)], cwd=project, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env={**env, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"})


def test_refuses_a_folder_that_is_not_empty(tmp_path):
    taken = tmp_path / "Taken"
    taken.mkdir()
    (taken / "mine.txt").write_text("keep me")
    result = run_script("new_project.py", taken)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [f"error: {taken} already exists and is not empty; choose a new folder name"]
    assert files_under(taken) == {Path("mine.txt")} and (taken / "mine.txt").read_text() == "keep me"

    inside = run_script("new_project.py", REPO / "tests" / "NewProjectInside")
    assert inside.returncode == 2 and len(inside.stderr.splitlines()) == 1 and "inside the template" in inside.stderr
    assert not (REPO / "tests" / "NewProjectInside").exists()


@pytest.mark.slow
@pytest.mark.skipif(not (REPO / ".git").exists(), reason="the template is not a git checkout here")
def test_new_project_copies_tracked_files_and_runs_on_its_own(tmp_path, synthetic_data_dir):
    project = tmp_path / "MyProject"
    result = run_script("new_project.py", project)
    assert result.returncode == 0, result.stderr

    copied = files_under(project)
    suite = Path("tests/project")
    expected = {f for f in tracked_files() if f.parts[0] not in ("data", "saved", "tests")}
    expected |= {Path("tests") / f.relative_to(suite) for f in tracked_files() if suite in f.parents}
    assert copied == expected | {Path("data/.gitkeep"), Path("saved/.gitkeep"), Path("tests/synthetic_mnist.py")}
    assert not any(set(f.parts) & NEVER_COPIED for f in copied)
    assert {Path("tests/conftest.py"), Path("tests/test_one_batch.py"), Path(".ci/run"), Path("config.json"),
            Path("new_project.py")} <= copied
    assert not (project / "tests" / "test_smoke.py").exists()  # the template's self-tests stay here
    for f, original in (("config.json", "config.json"), ("tests/conftest.py", "tests/project/conftest.py")):
        assert (project / f).read_bytes() == (REPO / original).read_bytes(), f  # copies, byte for byte
    assert [line.strip() for line in result.stdout.splitlines()[1:]] == [
        f"cd {project}", "pip install -r requirements.txt", "python train.py -c config.json -o trainer.epochs=2",
        "python -m pytest"]

    # its own test suite (a part of it) and one short run, side by side to share the start-up time
    tests = start_in(project, "-m", "pytest", "tests/test_config_fits.py", "-q", "-p", "no:cacheprovider")
    training = start_in(project, "train.py", "-c", "config.json",
                        "-o", f"data_loader.args.data_dir={synthetic_data_dir}",
                        "-o", "trainer.epochs=1", "-o", "+trainer.len_epoch=2", "-o", "trainer.tensorboard=false")
    try:
        tests_out, _ = tests.communicate(timeout=240)
        training_out, _ = training.communicate(timeout=240)
    finally:
        for process in (tests, training):
            if process.poll() is None:
                process.kill()
    assert tests.returncode == 0 and "3 passed" in tests_out, tests_out
    assert training.returncode == 0, training_out

    (run,) = run_dirs(project / "saved")
    assert run.parent.name == "Mnist_LeNet"
    assert len((run / "metrics.csv").read_text().splitlines()) == 2  # header and epoch 1
    provenance = json.loads((run / "provenance.json").read_text())
    assert provenance["git"] is None  # a fresh copy is no git checkout yet
    assert provenance["command"][1:3] == ["train.py", "-c"]
    assert f"Test:   python test.py -r {Path('saved/models/Mnist_LeNet') / run.name / 'model_best.pth'}" in training_out


def test_a_copy_inside_another_repository_copies_itself(tmp_path):
    # inside someone else's git repository, as a copy often is before its own `git init`
    outer = tmp_path / "monorepo"
    subprocess.run(["git", "init", "-q", str(outer)], check=True, timeout=30)
    project = outer / "MyProject"
    assert run_script("new_project.py", project).returncode == 0

    # the copy is a template too: copying it again gives the same files, its own tests/ whole (the outer repo
    # tracks none of them)
    again = run_script("new_project.py", tmp_path / "Again", cwd=project)
    assert again.returncode == 0, again.stderr
    assert files_under(tmp_path / "Again") == {f for f in files_under(project) if "__pycache__" not in f.parts}
    assert (tmp_path / "Again" / "tests" / "test_training.py").is_file()
