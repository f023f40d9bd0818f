"""Start a new project from this template: python new_project.py ../MyProject"""
import shutil
import subprocess
import sys
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parent
# never copied, whether git tracks them or not
EXCLUDED_PARTS = {".git", "__pycache__", ".pytest_cache", ".ruff_cache", ".venv", "venv", ".gl"}
# new_project.py goes along: the copy's own tests (tests/test_new_project.py) exercise it, and a new
# project is itself a template that may be copied again (a lab's base project, one copy per experiment)
EXCLUDED_TOP = {"data", "saved"}
KEEP_EMPTY = ("data", "saved")  # folders the new project needs, without their contents


def git(*args):
    return subprocess.run(["git", "-C", str(TEMPLATE), *args], capture_output=True, check=True,
                          timeout=30).stdout.decode()


def git_tracked_files():
    """The files git tracks in the template, or None when the template is no git checkout of its own."""
    try:
        # a copy not yet under git may sit inside someone else's repository, which tracks none of it
        if Path(git("rev-parse", "--show-toplevel").strip()).resolve() != TEMPLATE:
            return None
        return [Path(name) for name in git("ls-files", "-z").split("\0") if name]
    except (OSError, subprocess.CalledProcessError, subprocess.TimeoutExpired):
        return None


def template_files():
    """The files git tracks in the template; without git, every file minus the exclusions."""
    files = git_tracked_files()
    if files is None:
        files = [p.relative_to(TEMPLATE) for p in TEMPLATE.rglob("*") if p.is_file()]
    return [f for f in files if not (set(f.parts) & EXCLUDED_PARTS) and f.parts[0] not in EXCLUDED_TOP
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
    print(f"New project at {target} ({len(files)} files). Next:")
    print(f"  cd {target}")
    print("  pip install -r requirements.txt")
    print("  python train.py -c config.json")
    print("  python -m pytest")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
