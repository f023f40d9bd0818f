"""Run by tests/test_clean_exit.py, under torchrun or as rank 0 of 1: train.py's entry point, made to show a bad
teardown more often than now and then.

    torchrun --standalone --nproc_per_node=2 tests/helpers/exit_run.py [--list-threads] -c CONFIG

It trains as `python train.py -c CONFIG` does (the same main, the same run_entry that leaves the process group),
then, as training returns, leaves an all-reduce in flight on a tensor made in Python, its handle dropped: the
group's last barrier holds it, and gloo's worker thread frees it after that barrier, while the main thread
heads for exit. With --list-threads, after the entry point it prints `threads after exit: <names>`, the threads
still running; without, it exits at once, as train.py does (the listing's file reads would give a late worker
the time to finish).
"""
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # before the imports: the project's modules, wherever torchrun starts

import torch  # noqa: E402
import torch.distributed  # noqa: E402

import train  # noqa: E402
from runs.entry import run_entry  # noqa: E402
from utils import distributed as dist  # noqa: E402

LIST_THREADS = "--list-threads"


def train_then_leave_work_in_flight(device, argv):
    train.main(train.parse_args(argv), device)
    torch.distributed.all_reduce(torch.ones(1000), async_op=True)


def thread_names():
    tasks = Path("/proc/self/task")
    return sorted((tasks / task / "comm").read_text().strip() for task in os.listdir(tasks))


if __name__ == "__main__":
    argv = [arg for arg in sys.argv[1:] if arg != LIST_THREADS]
    device = dist.init_distributed()
    run_entry(lambda: train_then_leave_work_in_flight(device, argv))
    if LIST_THREADS in sys.argv:
        sys.stdout.write(f"threads after exit: {' '.join(thread_names())}\n")  # one write: ranks share a pipe
        sys.stdout.flush()
