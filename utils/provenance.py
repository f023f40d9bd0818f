"""What produced a run: command line, versions, device and git commit."""
import platform
import subprocess
import sys
from pathlib import Path

import torch

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def git_state(root=PROJECT_ROOT):
    """{'commit': sha, 'dirty': bool} when `root` is a git checkout, else None."""
    def git(*args):
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
    try:
        head = git("rev-parse", "HEAD")
        if head.returncode != 0:
            return None
        status = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.TimeoutExpired):
        return None
    return {"commit": head.stdout.strip(), "dirty": bool(status.stdout.strip())}


def collect_provenance(device=None):
    import torchvision

    return {
        "command": [sys.executable, *sys.argv],
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "cuda": torch.version.cuda,
        "device": str(device) if device is not None else None,
        "device_name": torch.cuda.get_device_name(device) if device is not None
        and torch.device(device).type == "cuda" else platform.processor() or platform.machine(),
        "platform": platform.platform(),
        "git": git_state(),
    }
