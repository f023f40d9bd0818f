"""Benchmark: the template's training loop against hand-written loops, on the real MNIST.

    python tests/benchmarks/bench_train.py [--reps 5] [--accuracy-epochs 2] [--out saved/bench/bench_train.json]

A: config.json as shipped (epochs=1, output to a temp folder) through train.main; B: a hand-written
loop over the same MnistDataLoader and its split_validation(); C: that loop over torchvision's MNIST
(ToTensor + Normalize) through a DataLoader with 2 workers, the classic data path. Each measurement
runs in a fresh process, repetitions interleaved (A B C, B C A, ...); medians are reported.
"""
import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RESULT_TAG = "BENCH_RESULT "
TARGETS = {  # name: (bound, "max" = ratio must stay at or below it, "min" = at or above)
    "epoch_time A/B": (1.05, "max"),
    "train samples/s A/C": (2.0, "min"),
    "first batch / import": (1.5, "max"),
    "peak RSS A/C": (1.15, "max"),
    "val_accuracy A": (0.97, "min"),
}
FIRST_BATCH_PROBE = """
import os, runpy, sys, time
import trainer.trainer as trainer_module
def first_batch(self, *args, **kwargs):
    print("{tag}" + repr(time.time()), flush=True)
    os._exit(0)
trainer_module.Trainer._run_batch = first_batch
sys.argv = ["train.py", "-c", {config!r}]
runpy.run_path("train.py", run_name="__main__")
"""
IMPORT_PROBE = "import time, torch, torchvision; print('{tag}' + repr(time.time()), flush=True)"


# ---- what runs inside a measured process ---------------------------------------------
def peak_rss_mib():
    import resource  # ru_maxrss is in KiB on Linux; "children": the largest reaped child (C's workers)

    return {"self": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "children": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}


def bench_config(epochs, save_dir):
    """config.json unchanged but for the number of epochs and the output folder."""
    config = json.loads((REPO / "config.json").read_text())
    config["trainer"].update(epochs=epochs, save_dir=str(save_dir))
    path = Path(save_dir) / "bench_config.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=4))
    return config, path


def run_template(epochs, save_dir):
    """A: train.main as `python train.py -c config.json` runs it; epochs read from metrics.csv."""
    import train

    _, path = bench_config(epochs, save_dir)
    train.main(train.parse_args(["-c", str(path)]))
    (metrics_csv,) = Path(save_dir).glob("models/*/*/metrics.csv")
    with metrics_csv.open() as handle:
        return [{k: float(v) for k, v in row.items() if v} for row in csv.DictReader(handle)]


def hand_written_loop(train_loader, valid_loader, epochs, seed):
    """B and C: the minimal loop a person writes: step, running loss, then validation."""
    import torch
    import torch.nn.functional as F

    from model.model import MnistModel

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(seed)
    model = MnistModel().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, amsgrad=True)
    epochs_out = []
    for epoch in range(1, epochs + 1):
        if hasattr(train_loader, "set_epoch"):
            train_loader.set_epoch(epoch)  # what the template's BatchStream does per pass
        started = time.perf_counter()
        model.train()
        loss_sum, seen = 0, 0
        for data, target in train_loader:
            data, target = data.to(device, non_blocking=True), target.to(device, non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            loss = F.nll_loss(model(data), target)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach() * target.size(0)
            seen += target.size(0)
        loss_value = float(loss_sum) / seen  # also waits for the device before the clock is read
        train_time = time.perf_counter() - started
        val_loss, val_accuracy = evaluate(model, valid_loader, device)
        epochs_out.append({"epoch": epoch, "loss": loss_value, "val_loss": val_loss, "val_accuracy": val_accuracy,
                           "epoch_time": time.perf_counter() - started, "samples_per_sec": seen / train_time})
    return epochs_out


def evaluate(model, loader, device):
    import torch
    import torch.nn.functional as F

    model.eval()
    loss_sum, correct, seen = 0, 0, 0  # become tensors on the device: no sync per batch
    with torch.no_grad():
        for data, target in loader:
            data, target = data.to(device, non_blocking=True), target.to(device, non_blocking=True)
            output = model(data)
            loss_sum += F.nll_loss(output, target, reduction="sum")
            correct += (output.argmax(dim=1) == target).sum()
            seen += target.size(0)
    return float(loss_sum) / seen, float(correct) / seen


def run_template_data_path(epochs):
    """B: the data path of A: the same MnistDataLoader (built as train.py builds it) and its split."""
    from data_loader.data_loaders import MnistDataLoader

    config = json.loads((REPO / "config.json").read_text())
    loader = MnistDataLoader(**config["data_loader"]["args"], seed=config["seed"])
    return hand_written_loop(loader, loader.split_validation(), epochs, config["seed"])


def run_classic_data_path(epochs, workers=2):
    """C: torchvision MNIST, per-sample ToTensor + Normalize, DataLoader with 2 workers, same split."""
    import torch
    from torch.utils.data import DataLoader, SubsetRandomSampler
    from torchvision import datasets, transforms

    from base.base_data_loader import BaseDataLoader

    config = json.loads((REPO / "config.json").read_text())
    args, seed = config["data_loader"]["args"], config["seed"]
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
    dataset = datasets.MNIST(args["data_dir"], train=True, download=False, transform=transform)
    train_idx, valid_idx = BaseDataLoader._split_indices(len(dataset), args["validation_split"], seed)
    pin = torch.cuda.is_available()
    shuffled = SubsetRandomSampler(train_idx.tolist(), generator=torch.Generator().manual_seed(seed))
    loaders = [DataLoader(dataset, args["batch_size"], sampler=sampler, num_workers=workers, pin_memory=pin)
               for sampler in (shuffled, valid_idx.tolist())]
    return hand_written_loop(*loaders, epochs, seed)


def worker_main(kind, epochs):
    os.chdir(REPO)
    sys.path.insert(0, str(REPO))
    with tempfile.TemporaryDirectory(prefix="bench_") as tmp:
        runs = {"A": lambda: run_template(epochs, tmp), "B": lambda: run_template_data_path(epochs),
                "C": lambda: run_classic_data_path(epochs)}
        result = {"epochs": runs[kind](), "rss_mib": peak_rss_mib()}
    print(RESULT_TAG + json.dumps(result), flush=True)


# ---- the driver: spawns the measured processes, prints and saves the table ------------
def spawn(args, timeout=1800):
    """Run a fresh python process in the repo; return (seconds from spawn to each tagged line, results)."""
    started = time.time()
    done = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})
    tagged = [line.removeprefix(RESULT_TAG) for line in done.stdout.splitlines() if line.startswith(RESULT_TAG)]
    if done.returncode != 0 or not tagged:
        sys.exit(f"benchmark process {args[:3]} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return started, time.time() - started, tagged[-1]


def runnable_tasks(samples=10, interval=0.1):
    """Mean count of other runnable tasks (from /proc/loadavg), sampled over about a second."""
    counts = []
    for _ in range(samples):
        counts.append(int(Path("/proc/loadavg").read_text().split()[3].split("/")[0]) - 1)  # minus this one
        time.sleep(interval)
    return statistics.mean(counts)


def wait_for_quiet(max_busy, timeout):
    """Wait (up to `timeout` s) until at most `max_busy` other tasks compete for the CPUs; return the count seen."""
    deadline = time.time() + timeout
    busy = runnable_tasks()
    while busy > max_busy and time.time() < deadline:
        time.sleep(2)
        busy = runnable_tasks()
    return busy


def measure_loop(kind, epochs):
    _, _, payload = spawn([__file__, "--worker", kind, "--epochs", str(epochs)])
    return json.loads(payload)


def measure_startup(tmp):
    """Seconds from process start to the first training batch of `train.py -c config.json`, and
    to the end of `import torch, torchvision` (the same probe line, then the probe exits)."""
    _, config_path = bench_config(1, Path(tmp) / "startup")
    started, _, stamp = spawn(["-c", FIRST_BATCH_PROBE.format(tag=RESULT_TAG, config=str(config_path))])
    first_batch = float(stamp) - started
    started, import_wall, stamp = spawn(["-c", IMPORT_PROBE.format(tag=RESULT_TAG)])
    return {"first_batch_s": first_batch, "import_s": float(stamp) - started, "import_wall_s": import_wall}


def run_benchmark(reps, accuracy_epochs, quiet):
    samples = {"A": [], "B": [], "C": [], "startup": []}
    loads = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory(prefix="bench_") as tmp:
        for rep in range(reps):
            order = "ABC"[rep % 3:] + "ABC"[:rep % 3]
            for kind in order:
                busy = wait_for_quiet(*quiet)
                samples[kind].append({**measure_loop(kind, 1), "other_runnable_tasks": busy})
                print(f"rep {rep + 1}/{reps} {kind}: {samples[kind][-1]['epochs'][0]['epoch_time']:.2f} s/epoch "
                      f"({busy:.1f} other runnable tasks at start)", flush=True)
            wait_for_quiet(*quiet)
            samples["startup"].append(measure_startup(tmp))
            loads.append(os.getloadavg()[0])
    accuracy = {kind: measure_loop(kind, accuracy_epochs)["epochs"][-1]["val_accuracy"]
                for kind in ("A", "C")} if accuracy_epochs else {}
    return summarize(samples, accuracy, accuracy_epochs, loads)


def summarize(samples, accuracy, accuracy_epochs, loads):
    def median(kind, pick):
        return statistics.median(pick(run) for run in samples[kind])

    rows = {kind: {"samples_per_sec": median(kind, lambda r: r["epochs"][0]["samples_per_sec"]),
                   "epoch_time_s": median(kind, lambda r: r["epochs"][0]["epoch_time"]),
                   "fastest_epoch_time_s": min(r["epochs"][0]["epoch_time"] for r in samples[kind]),
                   "peak_rss_mib": median(kind, lambda r: r["rss_mib"]["self"]),
                   "workers_peak_rss_mib": median(kind, lambda r: r["rss_mib"]["children"])} for kind in "ABC"}
    startup = {key: statistics.median(s[key] for s in samples["startup"]) for key in samples["startup"][0]}
    ratios = {"epoch_time A/B": rows["A"]["epoch_time_s"] / rows["B"]["epoch_time_s"],
              "train samples/s A/C": rows["A"]["samples_per_sec"] / rows["C"]["samples_per_sec"],
              "first batch / import": startup["first_batch_s"] / startup["import_s"],
              "peak RSS A/C": rows["A"]["peak_rss_mib"] / rows["C"]["peak_rss_mib"]}
    if accuracy:
        ratios["val_accuracy A"] = accuracy["A"]
    checks = {name: (value <= TARGETS[name][0]) if TARGETS[name][1] == "max" else (value >= TARGETS[name][0])
              for name, value in ratios.items()}
    return {"machine": machine(), "load_avg_1min": loads, "medians": rows, "startup": startup,
            "accuracy_epochs": accuracy_epochs, "val_accuracy": accuracy, "ratios": ratios, "pass": checks,
            "raw": samples}


def machine():
    import platform

    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    return {"cpu": model, "cores": os.cpu_count(), "python": platform.python_version()}


def format_table(result):
    m, s, r, ok = result["medians"], result["startup"], result["ratios"], result["pass"]
    verdict = {name: ("PASS" if passed else "FAIL") for name, passed in ok.items()}
    bound = {name: ("<= " if kind == "max" else ">= ") + f"{value:g}" for name, (value, kind) in TARGETS.items()}
    lines = [f"{'':30s} {'A template':>11s} {'B hand loop':>11s} {'C classic':>11s} {'ratio':>28s} "
             f"{'target':>8s}  result", "-" * 115]

    def row(label, a, b, c, name):
        lines.append(f"{label:30s} {a:>11s} {b:>11s} {c:>11s} {name + f' {r[name]:.3f}':>28s} "
                     f"{bound[name]:>8s}  {verdict[name]}")

    row("train samples/s", *(f"{m[k]['samples_per_sec']:.0f}" for k in "ABC"), "train samples/s A/C")
    row("epoch time s (train+valid)", *(f"{m[k]['epoch_time_s']:.2f}" for k in "ABC"), "epoch_time A/B")
    row("peak RSS MiB (main process)", f"{m['A']['peak_rss_mib']:.0f}", "-", f"{m['C']['peak_rss_mib']:.0f}",
        "peak RSS A/C")
    row("start to 1st batch s (A)", f"{s['first_batch_s']:.2f}", "-", "-", "first batch / import")
    lines.append(f"{'  import torch, torchvision s':30s} {s['import_s']:>11.2f}   (whole `python -c` "
                 f"incl. exit: {s['import_wall_s']:.2f} s)")
    if result["val_accuracy"]:
        acc = result["val_accuracy"]
        row(f"val_accuracy, {result['accuracy_epochs']} epochs", f"{acc['A']:.4f}", "-", f"{acc['C']:.4f}",
            "val_accuracy A")
    lines.append(f"C workers' peak RSS (largest one, not in the ratio): {m['C']['workers_peak_rss_mib']:.0f} MiB; "
                 f"machine: {result['machine']['cpu']}, {result['machine']['cores']} cores; "
                 f"1-min load per rep: {', '.join(f'{x:.2f}' for x in result['load_avg_1min'])}")
    return "\n".join(lines)


def add_quiet_wait_arguments(parser, timeout, what="other tasks are runnable"):
    """--max-busy and --quiet-timeout: before each measurement, wait (at most `timeout` s) until at most
    --max-busy of `what` (each benchmark's own measure of a busy machine)."""
    parser.add_argument("--max-busy", type=float, default=0.5,
                        help=f"before each measurement, wait until at most this many {what}")
    parser.add_argument("--quiet-timeout", type=float, default=timeout, help="longest such wait, in seconds")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5, help="repetitions of each measurement (median reported)")
    parser.add_argument("--accuracy-epochs", type=int, default=2, help="epochs for the accuracy check (0: skip)")
    parser.add_argument("--out", default="saved/bench/bench_train.json", help="where the JSON results go")
    add_quiet_wait_arguments(parser, timeout=120)
    parser.add_argument("--worker", choices="ABC", help=argparse.SUPPRESS)
    parser.add_argument("--epochs", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker_main(args.worker, args.epochs)
    require_real_mnist()
    result = run_benchmark(args.reps, args.accuracy_epochs, (args.max_busy, args.quiet_timeout))
    return report(result, format_table(result), args.out)


def require_real_mnist():
    """The benchmarks time the real data set: stop with how to link it when it is missing."""
    if not (REPO / "data" / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file():
        sys.exit(f"the real MNIST is missing in {REPO / 'data/MNIST/raw'}; link it, e.g. "
                 f"ln -s /path/to/MNIST {REPO / 'data/MNIST'}")


def report(result, table, out):
    """Print the table, write the JSON to `out` (relative to the repository); exit status 0 when all pass."""
    print(table)
    out = REPO / out if not Path(out).is_absolute() else Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"results: {out}")
    return 0 if all(result["pass"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
