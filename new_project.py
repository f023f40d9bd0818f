"""Start a new project from this template: python new_project.py ../MyProject"""
import shutil
import subprocess
import sys
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parent
# never copied, whether git tracks them or not
EXCLUDED_PARTS = {".git", "__pycache__", ".pytest_cache", ".ruff_cache", ".venv", "venv", ".gl"}
# new_project.py goes along: the copy's tests exercise it, and a copy may be copied again (one per experiment)
KEEP_EMPTY = ("data", "saved")  # folders the new project gets without their contents
NEXT_STEPS = ("pip install -r requirements.txt", "python train.py -c config.json -o trainer.epochs=2",
              'python -m pytest -m "not slow"')

# the template's README and CI script describe the template and its CI machine; a new project gets its own
CI_RUN = """#!/usr/bin/env bash
# CI: install what the project needs, run the quick and the slow tests.
# Real-data tests run when MNIST_DIR names a folder holding MNIST/raw's files (else they skip).
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -r requirements.txt
if [ -n "${MNIST_DIR:-}" ] && [ ! -e data/MNIST ]; then
    mkdir -p data && ln -s "$MNIST_DIR" data/MNIST
fi
python -m pytest -m "not slow"
python -m pytest -m slow
"""


def project_readme(name):
    steps = "\n".join(NEXT_STEPS)
    return f"""# {name}

Started from a PyTorch template: `config.json` names each part of the experiment
(model, data loader, loss, metrics, optimizer), `train.py` trains it into
`saved/models/<name>/<run_id>/`, `test.py -r <checkpoint>` tests it.

```bash
{steps}
python -m pytest -m slow   # kills, restarts, torchrun
```

MNIST is downloaded to `data/MNIST/raw/` when missing; offline, place the files
there and set `data_loader.args.download` to false. Replace the MNIST parts with
your own: [docs/customizing.md](docs/customizing.md). Checkpoints and resuming:
[docs/checkpoints.md](docs/checkpoints.md). `.ci/run` installs and runs both test commands.
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
    files = template_files()
    for rel in files:
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(TEMPLATE / rel, target / rel)
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
