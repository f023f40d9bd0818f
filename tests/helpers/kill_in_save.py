"""Run under torchrun by tests/test_sharded_checkpoints.py: train.py, except that rank 0 is SIGKILLed in the save
of epoch KILL_EPOCH after every rank has written its shards and before the .pth files are committed.

    torchrun --standalone --nproc_per_node=2 tests/helpers/kill_in_save.py KILL_EPOCH [train.py flags]
"""
import os
import signal
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import train  # noqa: E402
from runs.checkpointer import Checkpointer  # noqa: E402


def kill_before_commit(epoch):
    """Checkpointer.write is the commit (rank 0 alone calls it): die there, the save's shards on disk."""
    original = Checkpointer.write

    def write_or_die(self, state, names, *args):
        if state.get("epoch") == epoch:
            print(f"KILLED in the save of epoch {epoch}, shards in {state['shards']['folder']}", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        original(self, state, names, *args)

    Checkpointer.write = write_or_die


if __name__ == "__main__":
    kill_before_commit(int(sys.argv[1]))
    sys.argv = ["train.py", *sys.argv[2:]]
    train.cli()
