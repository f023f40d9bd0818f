"""What produced a run: command line, versions, device and git commit."""
import importlib.metadata
import importlib.util
import platform
import re
import subprocess
import sys
from pathlib import Path

import torch

from utils.redact import redact_all

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def git_state(root=PROJECT_ROOT):
    """{'commit': sha, 'dirty': bool} when `root` is a git checkout, else None."""
    def git(*args):
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10, check=True)
    try:
        head = git("rev-parse", "HEAD")
        status = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):  # no git, no checkout, or no answer
        return None
    return {"commit": head.stdout.strip(), "dirty": bool(status.stdout.strip())}


def package_version(name):
    """`name.__version__` without importing the package (torchvision takes seconds to import), read from its
    version.py, which keeps local tags such as +cu130 that the installed metadata may lack."""
    if name in sys.modules:
        return getattr(sys.modules[name], "__version__", None)
    spec = importlib.util.find_spec(name)
    if spec is None:
        return None
    version_file = Path(spec.origin).with_name("version.py")
    found = re.search(r"^__version__ = ['\"]([^'\"]+)", version_file.read_text(), re.M) \
        if version_file.is_file() else None
    return found.group(1) if found else importlib.metadata.version(name)


def collect_provenance(device=None, notes=None):
    """The record, with passwords in the command line or the `notes` (what an entry point adds about the run,
    e.g. tune.py's trial and its --storage URL) shown as ***."""
    return redact_all({
        "command": [sys.executable, *sys.argv],
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": package_version("torchvision"),
        "cuda": torch.version.cuda,
        "device": str(device) if device is not None else None,
        "device_name": torch.cuda.get_device_name(device) if device is not None
        and torch.device(device).type == "cuda" else platform.processor() or platform.machine(),
        "platform": platform.platform(),
        "git": git_state(),
        **(notes or {}),
    })
