"""How long compare.py takes to list many runs: N run folders written file by file (30 settings of 10 seeds
for 300), then `python compare.py <name folder>` as a user runs it, whole process timed (start-up included).

    python tests/benchmarks/bench_compare.py [--runs 300] [--reps 3]

Prints the median and slowest wall time and the rows shown; the goal is under 3 s for 300 runs.
"""
import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.helpers.paths import REPO  # noqa: E402
from tests.helpers.run_folders import fabricate_run  # noqa: E402

SEEDS = 10


def fabricate(name_folder, runs):
    for index in range(runs):
        setting, seed = divmod(index, SEEDS)
        fabricate_run(name_folder, f"s{setting}-seed{seed}", seed=seed, lr=0.001 * (1 + setting), epochs=20,
                      test_accuracy=0.9 + seed / 1000)


def main():
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--runs", type=int, default=300)
    args.add_argument("--reps", type=int, default=3)
    args = args.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_compare_") as tmp:
        name_folder = Path(tmp) / "saved" / "models" / "Mnist_LeNet"
        fabricate(name_folder, args.runs)
        times = []
        for _ in range(args.reps):
            start = time.perf_counter()
            done = subprocess.run([sys.executable, "compare.py", str(name_folder)], cwd=REPO, capture_output=True,
                                  text=True, check=True)
            times.append(time.perf_counter() - start)
    shown = len(done.stdout.splitlines()) - 1
    print(f"compare.py on {args.runs} runs ({shown} rows): median {statistics.median(times):.2f} s, "
          f"slowest {max(times):.2f} s over {args.reps} runs; goal: under 3 s for 300")


if __name__ == "__main__":
    main()
