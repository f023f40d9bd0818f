"""Run by tests/test_clean_exit.py, under torchrun or as rank 0 of 1: train.py's entry point, then the threads left.

    torchrun --standalone --nproc_per_node=2 tests/exit_run.py -c CONFIG

It trains as `python train.py -c CONFIG` does (the same main, the same run_entry that leaves the process
group), with one difference that makes a bad teardown show every time instead of now and then: when training
returns, one all-reduce on a tensor made in Python is left in flight, its handle dropped, so that only gloo's
worker thread still holds that tensor when the group is left. After the entry point returns it prints
`threads after exit: <names>`, the threads still running as the interpreter shuts down.
"""
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # before the imports: the project's modules, wherever torchrun starts

import torch  # noqa: E402
import torch.distributed  # noqa: E402

import train  # noqa: E402
from utils import distributed as dist  # noqa: E402
from utils.errors import run_entry  # noqa: E402


def train_then_leave_work_in_flight(device):
    train.main(train.parse_args(sys.argv[1:]), device)
    # the last collective's tensors, freed by the worker after the caller moved on: what cleanup must outlast
    torch.distributed.all_reduce(torch.ones(1000), async_op=True)


def thread_names():
    tasks = Path("/proc/self/task")
    return sorted((tasks / task / "comm").read_text().strip() for task in os.listdir(tasks))


if __name__ == "__main__":
    device = dist.init_distributed()
    run_entry(lambda: train_then_leave_work_in_flight(device))
    sys.stdout.write(f"threads after exit: {' '.join(thread_names())}\n")  # one write: ranks share the pipe
    sys.stdout.flush()
