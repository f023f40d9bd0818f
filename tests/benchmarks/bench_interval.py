"""Cost of trainer.checkpoint_interval on the real MNIST: the default config, one epoch per run.

    python tests/benchmarks/bench_interval.py [--reps 3]

N: no interval; S: every 50 optimizer steps (~9 saves an epoch); T: every "2s" (~2 an epoch).
Each run is a fresh process; runs rotate (N S T, S T N, ...); medians of the training epoch
time (train + valid, from metrics.csv). Also the time of one model_latest.pth save, so the
cost at "one save a minute" follows: save time / 60 s.
"""
import argparse
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.benchmarks.bench_train import RESULT_TAG, bench_config, spawn, wait_for_quiet  # noqa: E402

INTERVALS = {"N": None, "S": 50, "T": "2s"}


def worker(kind):
    import csv

    import train

    with tempfile.TemporaryDirectory(prefix="bench_") as tmp:
        config, path = bench_config(1, tmp)
        config["trainer"].update(checkpoint_interval=INTERVALS[kind], tensorboard=False)
        path.write_text(json.dumps(config))
        train.main(train.parse_args(["-c", str(path)]))
        (metrics_csv,) = Path(tmp).glob("models/*/*/metrics.csv")
        with metrics_csv.open() as handle:
            row = next(csv.DictReader(handle))
    print(RESULT_TAG + json.dumps({"epoch_time": float(row["epoch_time"])}), flush=True)


def save_seconds(repeats=20):
    """Median time of one model_latest.pth write of the default model and Adam state."""
    import torch

    from model.model import MnistModel
    from runs.files import LATEST
    from runs.journal import write_files

    model = MnistModel()
    optimizer = torch.optim.Adam(model.parameters(), amsgrad=True)
    model(torch.zeros(2, 1, 28, 28)).sum().backward()
    optimizer.step()
    state = {"state_dict": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": 1}
    with tempfile.TemporaryDirectory() as tmp:
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            buffer = io.BytesIO()  # what the Checkpointer does for a mid-epoch save: serialize, one atomic file
            torch.save(state, buffer)
            write_files(Path(tmp), [(LATEST, buffer.getbuffer())])
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--worker", choices=list(INTERVALS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args.worker)
    times = {kind: [] for kind in INTERVALS}
    for rep in range(args.reps):
        order = "NST"[rep % 3:] + "NST"[:rep % 3]
        for kind in order:
            wait_for_quiet(0.5, 60)
            _, _, payload = spawn([__file__, "--worker", kind])
            times[kind].append(json.loads(payload)["epoch_time"])
            print(f"rep {rep + 1} {kind}: {times[kind][-1]:.2f} s", flush=True)
    med = {kind: statistics.median(values) for kind, values in times.items()}
    save = save_seconds()
    print(f"epoch time s (median): none {med['N']:.2f}, every 50 steps {med['S']:.2f}, every 2s {med['T']:.2f}")
    print(f"ratio steps/none {med['S'] / med['N']:.3f}, duration/none {med['T'] / med['N']:.3f}")
    print(f"one model_latest.pth save: {save * 1000:.1f} ms; at one save a minute: {100 * save / 60:.3f} % "
          f"(target <= 3 %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
