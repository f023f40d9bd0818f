"""Start a new project from this template: python new_project.py ../MyProject"""
import shutil
import subprocess
import sys
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parent
# never copied, whether git tracks them or not
EXCLUDED_PARTS = {".git", "__pycache__", ".pytest_cache", ".ruff_cache", ".venv", "venv", ".gl"}
EXCLUDED_TOP = {"data", "saved", Path(__file__).name}
KEEP_EMPTY = ("data", "saved")  # folders the new project needs, without their contents


def template_files():
    """The files git tracks in the template; without git, every file minus the exclusions."""
    try:
        listed = subprocess.run(["git", "-C", str(TEMPLATE), "ls-files", "-z"], capture_output=True,
                                check=True, timeout=30).stdout.decode().split("\0")
        files = [Path(name) for name in listed if name]
    except (OSError, subprocess.CalledProcessError, subprocess.TimeoutExpired):
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
