"""Benchmark of the per-sample data path (a user's own Dataset), whole process, on the real MNIST.

    python tests/benchmarks/bench_per_sample.py [--reps 3] [--epochs 1]

D: `python train.py -c config.json` with data_loader.args.in_memory=false: uint8 samples, the
   batch step after collation, num_workers picked from the cores (0 on 2 cores).
E: the hand-written loop over torchvision's MNIST with per-sample ToTensor + Normalize and a
   DataLoader with 2 workers (the classic data path), same split and model.
Each run is a fresh process, timed from spawn to exit; runs alternate (D E, E D, ...); medians.
Target: D/E <= 0.8 with D's val_accuracy equal to the in-memory path's (the batches are bit-identical).
"""
import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.benchmarks.bench_train import (  # noqa: E402
    REPO,
    RESULT_TAG,
    bench_config,
    run_classic_data_path,
    spawn,
    wait_for_quiet,
)

TARGET = 0.8


def run_template_per_sample(epochs, save_dir, in_memory=False):
    import csv
    import os

    import train

    os.chdir(REPO)
    config, path = bench_config(epochs, save_dir)
    config["data_loader"]["args"]["in_memory"] = in_memory
    path.write_text(json.dumps(config, indent=4))
    train.main(train.parse_args(["-c", str(path)]))
    (metrics_csv,) = Path(save_dir).glob("models/*/*/metrics.csv")
    with metrics_csv.open() as handle:
        return [{k: float(v) for k, v in row.items() if v} for row in csv.DictReader(handle)]


def worker(kind, epochs):
    with tempfile.TemporaryDirectory(prefix="bench_") as tmp:
        if kind == "D":
            epochs_out = run_template_per_sample(epochs, tmp)
        elif kind == "A":
            epochs_out = run_template_per_sample(epochs, tmp, in_memory=True)
        else:
            epochs_out = run_classic_data_path(epochs)
    print(RESULT_TAG + json.dumps(epochs_out), flush=True)


def measure(kind, epochs):
    _, wall, payload = spawn([__file__, "--worker", kind, "--epochs", str(epochs)])
    epochs_out = json.loads(payload)
    last = epochs_out[-1]
    return {"wall_s": wall, "epoch_time_s": last["epoch_time"], "val_accuracy": last["val_accuracy"]}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--worker", choices="ADE", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args.worker, args.epochs)
    runs = {"D": [], "E": []}
    for rep in range(args.reps):
        for kind in ("DE" if rep % 2 == 0 else "ED"):
            wait_for_quiet(0.5, 60)
            runs[kind].append(measure(kind, args.epochs))
            print(f"rep {rep + 1} {kind}: {runs[kind][-1]['wall_s']:.2f} s whole process", flush=True)
    in_memory = measure("A", args.epochs)["val_accuracy"]
    med = {k: {m: statistics.median(r[m] for r in v) for m in ("wall_s", "epoch_time_s")} for k, v in runs.items()}
    ratio = med["D"]["wall_s"] / med["E"]["wall_s"]
    print(f"{'':34s} {'D template':>11s} {'E hand loop':>11s}")
    print(f"{'whole process s (median)':34s} {med['D']['wall_s']:>11.2f} {med['E']['wall_s']:>11.2f}")
    print(f"{'epoch time s, train+valid (median)':34s} {med['D']['epoch_time_s']:>11.2f} "
          f"{med['E']['epoch_time_s']:>11.2f}")
    print(f"{'val_accuracy after ' + str(args.epochs) + ' epoch(s)':34s} {runs['D'][0]['val_accuracy']:>11.4f} "
          f"{runs['E'][0]['val_accuracy']:>11.4f}   in-memory path: {in_memory:.4f}")
    same = runs["D"][0]["val_accuracy"] == in_memory
    verdict = "PASS" if ratio <= TARGET and same else "FAIL"
    print(f"whole process D/E {ratio:.3f} (target <= {TARGET}); val_accuracy equal to in-memory: {same}  {verdict}")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
