"""Start a new project from this template: python new_project.py ../MyProject"""
import shutil
import subprocess
import sys
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parent
# never copied, whether git tracks them or not
EXCLUDED_PARTS = {".git", "__pycache__", ".pytest_cache", ".ruff_cache", ".venv", "venv", ".gl"}
# new_project.py goes along: a copy may be copied again (one per experiment)
KEEP_EMPTY = ("data", "saved")  # folders the new project gets without their contents
# the template's tests/ tests the template; a new project gets the small suite in tests/project/ as its tests/,
# driven by its own config.json, plus the synthetic MNIST writer it uses (a copy of a copy keeps its tests/)
PROJECT_SUITE = Path("tests/project")
PROJECT_SUITE_EXTRAS = (Path("tests/synthetic_mnist.py"),)
NEXT_STEPS = ("pip install -r requirements.txt", "python train.py -c config.json -o trainer.epochs=2",
              "python -m pytest")

# the template's README and CI script describe the template and its CI machine; a new project gets its own
CI_RUN = """#!/usr/bin/env bash
# CI: install what the project needs, run its tests.
# MNIST_DIR, when set, names a folder holding MNIST/raw's files for train.py (the tests use synthetic ones).
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -r requirements.txt
if [ -n "${MNIST_DIR:-}" ] && [ ! -e data/MNIST ]; then
    mkdir -p data && ln -s "$MNIST_DIR" data/MNIST
fi
python -m pytest
"""


def project_readme(name):
    steps = "\n".join(NEXT_STEPS)
    return f"""# {name}

Started from a PyTorch template: `config.json` names each part of the experiment
(model, data loader, loss, metrics, optimizer), `train.py` trains it into
`saved/models/<name>/<run_id>/`, `test.py -r <checkpoint>` tests it.

```bash
{steps}
```

MNIST is downloaded to `data/MNIST/raw/` when missing; offline, place the files
there and set `data_loader.args.download` to false. Replace the MNIST parts with
your own: [docs/customizing.md](docs/customizing.md). Checkpoints and resuming:
[docs/checkpoints.md](docs/checkpoints.md). `.ci/run` installs and runs the tests.

## Tests

`python -m pytest` (about a minute) tests whatever `config.json` names, made small
in one place (`shrink` in `tests/conftest.py`: a few small batches per epoch, on
the CPU, runs in a temporary folder). The example MnistDataLoader reads
synthetic files; any other loader reads its configured `data_dir` and evaluates
its whole validation and test splits: for a large data set, set `data_dir` in
`shrink` to a small sample of it.
- `test_config_fits.py`: the data loader builds and gives batches, the model takes
  one, the loss and metrics take its output, the optimizer and scheduler build;
  a failure names the part, e.g. `arch MyNet: forward on a batch of shape ...`.
- `test_one_batch.py`: one training step: a finite loss, changed weights.
- `test_training.py`: `train.py`, then `test.py` on its checkpoint; a resume equal
  bit for bit to an uninterrupted run; a fine-tune with `-c partial.json -r`.

Add tests for your own parts beside them (`tests/parts.py` builds each part from
the config); mark slow ones `@pytest.mark.slow` and skip them with `-m "not slow"`.
"""


def git(*args):
    return subprocess.run(["git", "-C", str(TEMPLATE), *args], capture_output=True, check=True,
                          timeout=30).stdout.decode()


def template_files():
    """The files git tracks in the template (every file when it is no git checkout of its own), minus exclusions."""
    try:
        # a copy not yet under git may sit inside someone else's repository, which tracks none of it
        own = Path(git("rev-parse", "--show-toplevel").strip()).resolve() == TEMPLATE
        files = [Path(name) for name in git("ls-files", "-z").split("\0") if name] if own else None
    except (OSError, subprocess.CalledProcessError, subprocess.TimeoutExpired):
        files = None
    if files is None:
        files = [p.relative_to(TEMPLATE) for p in TEMPLATE.rglob("*") if p.is_file()]
    return [f for f in files if not (set(f.parts) & EXCLUDED_PARTS) and f.parts[0] not in KEEP_EMPTY
            and (TEMPLATE / f).is_file()]


def destination(rel):
    """Where a template file goes in the new project, or None when it stays with the template."""
    if not (TEMPLATE / PROJECT_SUITE).is_dir() or rel.parts[0] != "tests":  # a project's own tests/ goes whole
        return rel
    if PROJECT_SUITE in rel.parents:
        return Path("tests") / rel.relative_to(PROJECT_SUITE)
    return rel if rel in PROJECT_SUITE_EXTRAS else None


def main(argv):
    if len(argv) != 1:
        print("error: give the new project's folder: python new_project.py ../MyProject", file=sys.stderr)
        return 2
    target = Path(argv[0]).resolve()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        print(f"error: {target} already exists and is not empty; choose a new folder name", file=sys.stderr)
        return 2
    if target == TEMPLATE or TEMPLATE in target.parents:
        print(f"error: {target} is inside the template; choose a folder outside it", file=sys.stderr)
        return 2
    files = [(rel, destination(rel)) for rel in template_files()]
    files = [(rel, dest) for rel, dest in files if dest is not None]
    for rel, dest in files:
        (target / dest).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(TEMPLATE / rel, target / dest)
    for folder in KEEP_EMPTY:
        (target / folder).mkdir(parents=True, exist_ok=True)
        (target / folder / ".gitkeep").touch()
    (target / "README.md").write_text(project_readme(target.name))
    (target / ".ci").mkdir(exist_ok=True)
    (target / ".ci" / "run").write_text(CI_RUN)
    (target / ".ci" / "run").chmod(0o755)
    print(f"New project at {target} ({len(files)} files). Next:")
    for line in (f"cd {target}", *NEXT_STEPS):
        print(f"  {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
