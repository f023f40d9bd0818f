"""A new project's own README and CI script: about the project, with no path of this repository's CI."""
import os
import subprocess

from tests.helpers.cli import run_script


def test_new_project_gets_its_own_readme_and_a_ci_script_that_runs_there(tmp_path):
    project = tmp_path / "MyProject"
    assert run_script("new_project.py", project).returncode == 0

    readme = (project / "README.md").read_text()
    assert readme.startswith("# MyProject\n") and len(readme) < 2000
    assert "python -m pytest" in readme and "download" in readme
    for name in ("README.md", ".ci/run", "tests/conftest.py"):
        assert "shared" not in (project / name).read_text(), f"{name} names this repository's CI"

    # .ci/run from end to end, with a stand-in python that records what it is asked to do
    bin_dir, calls, mnist = tmp_path / "bin", tmp_path / "calls.txt", tmp_path / "mnist"
    bin_dir.mkdir()
    mnist.mkdir()
    (bin_dir / "python").write_text(f'#!/bin/sh\necho "$*" >> {calls}\n')
    (bin_dir / "python").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "MNIST_DIR": str(mnist)}
    ci = subprocess.run([str(project / ".ci" / "run")], cwd=tmp_path, env=env, capture_output=True, text=True,
                        timeout=60)
    assert ci.returncode == 0, ci.stderr
    assert calls.read_text().splitlines() == [
        "-m pip install -r requirements.txt", "-m pytest"]
    assert (project / "data" / "MNIST").resolve() == mnist
