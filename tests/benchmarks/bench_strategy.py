"""Benchmark: trainer.strategy "fsdp" against "ddp", step time at 2 CPU ranks (gloo), LeNet on synthetic MNIST.

    python tests/benchmarks/bench_strategy.py [--reps 3] [--train 6000] [--out saved/bench/bench_strategy.json]

Each measurement is one `torchrun --standalone --nproc_per_node=2 train.py` of one epoch (batch 64 per rank),
repetitions interleaved (ddp fsdp, fsdp ddp, ...); the step time is the batch over the epoch's training
samples/s (metrics.csv, validation excluded); medians are reported with the ratio fsdp/ddp.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.helpers.configs import shrink_config, write_config  # noqa: E402
from tests.synthetic_mnist import write_synthetic_mnist  # noqa: E402

WORLD, BATCH = 2, 64


def step_ms(root, data, strategy, rep):
    """One 2-rank epoch under `strategy`: milliseconds per optimizer step."""
    folder = root / f"{strategy}_{rep}"
    folder.mkdir()
    config = shrink_config(folder, data, strategy=strategy, epochs=1)
    config["arch"]["args"] = {"channels_last": False}  # both strategies on the same layout
    config["data_loader"]["args"].update(batch_size=BATCH, validation_split=0.1)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={WORLD}",
               str(REPO / "train.py"), "-c", str(write_config(folder, config))]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if done.returncode:
        sys.exit(done.stderr[-2000:])
    (metrics,) = (folder / "saved" / "models").glob("*/*/metrics.csv")
    return 1000 * BATCH * WORLD / float(pd.read_csv(metrics)["samples_per_sec"].iloc[0])


def main():
    args = argparse.ArgumentParser()
    args.add_argument("--reps", type=int, default=3)
    args.add_argument("--train", type=int, default=6000, help="synthetic training samples")
    args.add_argument("--out", default="saved/bench/bench_strategy.json")
    args = args.parse_args()
    times = {"ddp": [], "fsdp": []}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = write_synthetic_mnist(root / "mnist", n_train=args.train, n_test=100)
        for rep in range(args.reps):
            for strategy in (("ddp", "fsdp") if rep % 2 == 0 else ("fsdp", "ddp")):
                times[strategy].append(step_ms(root, data, strategy, rep))
    result = {name: statistics.median(values) for name, values in times.items()}
    result["fsdp/ddp"] = result["fsdp"] / result["ddp"]
    result["runs"] = times
    print(f"step time at {WORLD} ranks (ms, median of {args.reps}): ddp {result['ddp']:.2f}  "
          f"fsdp {result['fsdp']:.2f}  ratio fsdp/ddp {result['fsdp/ddp']:.2f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
