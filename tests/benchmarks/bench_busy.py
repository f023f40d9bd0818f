"""Benchmark: an epoch slice of config.json alone and beside busy processes, today's threads against the choice.

    python tests/benchmarks/bench_busy.py [--reps 3] [--batches 120] [--busy 2] [--out saved/bench/bench_busy.json]

The slice: config.json as shipped (real MNIST) with trainer.len_epoch=<batches>, one epoch (train + valid);
its time is metrics.csv's epoch_time. "old": torch's defaults as before the choice existed (torch loaded
before utils/before_torch.py, so OpenMP spins as it did, and trainer.cpu_threads = torch's default
count); "new": `python train.py` as a user runs it. "busy": <busy> CPU-bound processes (a Python spin loop
each) run from before the start to the end. Each run is a fresh process; the four cells are interleaved,
their order turning each repetition; medians are reported.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
from tests.benchmarks.bench_train import add_quiet_wait_arguments, report, require_real_mnist  # noqa: E402
from utils.cpu_threads import measure_load  # noqa: E402  (no torch: the driver stays light)

CELLS = [("old", "alone"), ("old", "busy"), ("new", "alone"), ("new", "busy")]
TARGETS = {  # name: (bound, "max" = the ratio must stay at or below it)
    "new busy/alone": (2.5, "max"),
    "new alone / old alone": (1.05, "max"),
}
SPIN = "while True: pass"
# today's behaviour: torch (and its OpenMP) loaded before train.py's first import, its thread count kept
OLD_RUNNER = """
import runpy, sys, torch
sys.argv = ["train.py", "-c", {config!r}, "-o", "trainer.cpu_threads=" + str(torch.get_num_threads())]
runpy.run_path("train.py", run_name="__main__")
"""


def slice_config(folder, batches):
    """config.json unchanged but for one epoch of `batches` batches and the output folder."""
    config = json.loads((REPO / "config.json").read_text())
    config["trainer"].update(epochs=1, len_epoch=batches, save_dir=str(Path(folder) / "saved"))
    path = Path(folder) / "config.json"
    path.write_text(json.dumps(config, indent=4))
    return path


def run_slice(kind, batches):
    """One fresh process training the slice; (epoch seconds, the run's CPU threads line)."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
    with tempfile.TemporaryDirectory(prefix="bench_busy_") as folder:
        config = slice_config(folder, batches)
        args = ["train.py", "-c", str(config)] if kind == "new" else ["-c", OLD_RUNNER.format(config=str(config))]
        done = subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=1800)
        metrics = list(Path(folder).glob("saved/models/*/*/metrics.csv"))
        if done.returncode != 0 or not metrics:
            sys.exit(f"the {kind} slice failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
        header, first = metrics[0].read_text().splitlines()[:2]
        epoch_time = float(dict(zip(header.split(","), first.split(","), strict=True))["epoch_time"])
        (info_log,) = Path(folder).glob("saved/log/*/*/info.log")
        threads = next((line.split("CPU threads: ", 1)[1] for line in info_log.read_text().splitlines()
                        if "CPU threads: " in line), "?")
    return epoch_time, threads


class BusyProcesses:
    """`count` CPU-bound processes for the length of a `with` block (ended by their own ids)."""

    def __init__(self, count):
        self.count, self.processes = count, []

    def __enter__(self):
        self.processes = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(self.count)]
        time.sleep(1)  # running, as they would be when a run starts beside them
        return self

    def __exit__(self, *exc):
        for process in self.processes:
            process.kill()
            process.wait()


def wait_for_quiet(max_busy, timeout):
    """Wait (up to `timeout` s) until other processes keep at most `max_busy` cores busy; return that load."""
    deadline, load = time.time() + timeout, measure_load(1.0)
    while load.busy > max_busy and time.time() < deadline:
        time.sleep(2)
        load = measure_load(1.0)
    return load.busy


def run_benchmark(reps, batches, busy, quiet):
    samples = {f"{kind} {where}": [] for kind, where in CELLS}
    for rep in range(reps):
        for kind, where in CELLS[rep % 4:] + CELLS[:rep % 4]:
            before = wait_for_quiet(*quiet)
            with BusyProcesses(busy if where == "busy" else 0):
                seconds, threads = run_slice(kind, batches)
            samples[f"{kind} {where}"].append({"epoch_time": seconds, "other_busy_cores_before": before,
                                               "choice": threads})
            print(f"rep {rep + 1}/{reps} {kind} {where}: {seconds:.2f} s ({before:.1f} cores busy before; "
                  f"CPU threads: {threads})", flush=True)
    return summarize(samples, batches, busy)


def summarize(samples, batches, busy):
    medians = {cell: statistics.median(s["epoch_time"] for s in runs) for cell, runs in samples.items()}
    ratios = {"old busy/alone": medians["old busy"] / medians["old alone"],
              "new busy/alone": medians["new busy"] / medians["new alone"],
              "new alone / old alone": medians["new alone"] / medians["old alone"],
              "new busy / old busy": medians["new busy"] / medians["old busy"]}
    checks = {name: ratios[name] <= bound for name, (bound, _) in TARGETS.items()}
    return {"machine": {"cores": os.cpu_count(), "load_avg": os.getloadavg()}, "batches": batches,
            "busy_processes": busy, "medians_s": medians, "ratios": ratios, "pass": checks, "raw": samples}


def format_table(result):
    m, r = result["medians_s"], result["ratios"]
    lines = [f"epoch slice: {result['batches']} batches + validation; busy: {result['busy_processes']} "
             f"spinning processes; medians in s", f"{'':6s} {'alone':>8s} {'busy':>8s} {'busy/alone':>11s}"]
    for kind in ("old", "new"):
        lines.append(f"{kind:6s} {m[kind + ' alone']:8.2f} {m[kind + ' busy']:8.2f} {r[kind + ' busy/alone']:11.2f}")
    for name in ("new alone / old alone", "new busy / old busy"):
        lines.append(f"{name}: {r[name]:.3f}")
    for name, (bound, _) in TARGETS.items():
        lines.append(f"target {name} <= {bound:g}: {'PASS' if result['pass'][name] else 'FAIL'}")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3, help="repetitions of each cell (median reported)")
    parser.add_argument("--batches", type=int, default=120, help="training batches in the slice")
    parser.add_argument("--busy", type=int, default=2, help="CPU-bound processes beside the busy runs")
    parser.add_argument("--out", default="saved/bench/bench_busy.json", help="where the JSON results go")
    add_quiet_wait_arguments(parser, timeout=60, what="cores are kept busy by other processes")
    args = parser.parse_args(argv)
    require_real_mnist()
    result = run_benchmark(args.reps, args.batches, args.busy, (args.max_busy, args.quiet_timeout))
    return report(result, format_table(result), args.out)


if __name__ == "__main__":
    sys.exit(main())
