"""Benchmark tune.py (not a timed test): its overhead on a trial, what pruning saves, two workers on
one SQLite study, and memory over a 20-trial study.

    python tests/benchmarks/bench_tune.py [--reps 3] [--n-train 6000] [--out saved/bench/bench_tune.json]

Data: the real MNIST when data/MNIST/raw holds it (--n-train 0), else synthetic MNIST of --n-train
samples. Every measurement is a whole process, as a user runs it.
- overhead: a 1-epoch trial (tune.py --trials 1) against the same config through train.py,
  alternated, medians; target ratio <= 1.05.
- pruning: a seeded 12-trial, 3-epoch study with MedianPruner against the same study without one:
  epochs trained (target <= 70 %) and the best value of each.
- workers: two tune.py on one fresh SQLite study (8 trials): wall time, and the longest time any
  worker spent in storage calls (waiting on the database included).
- memory: peak RSS after trial 2 and after trial 20 of one worker (target: within 10 %).
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
TAG = "BENCH_RESULT "
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}
# runs tune.py's cli, timing every storage call and recording peak RSS after each trial
PROBE = """
import json, resource, sys, time
import optuna, tune
spent, rss = [0.0], []
def timed(method):
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            spent[0] += time.perf_counter() - start
    return wrapper
for name in dir(optuna.storages.RDBStorage):
    if not name.startswith("_") and callable(getattr(optuna.storages.RDBStorage, name)):
        setattr(optuna.storages.RDBStorage, name, timed(getattr(optuna.storages.RDBStorage, name)))
line = tune.progress_line
def progress_line(*args):
    rss.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return line(*args)
tune.progress_line = progress_line
sys.argv = ["tune.py", *sys.argv[1:]]
try:
    tune.cli()
finally:
    print("{tag}" + json.dumps({{"db_seconds": spent[0], "rss_mib": rss}}), flush=True)
"""


def run(args, probe=False):
    """Wall seconds of one process, and the probe's report when `probe`."""
    command = [sys.executable, "-c", PROBE.format(tag=TAG), *args[1:]] if probe else [sys.executable, *args]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, env=ENV, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"benchmark run failed: {' '.join(args)}\n{done.stderr[-3000:]}")
    report = next((json.loads(x[len(TAG):]) for x in done.stdout.splitlines() if x.startswith(TAG)), None)
    return wall, report


def make_config(root, n_train):
    config = json.loads((REPO / "config.json").read_text())
    data = REPO / "data"
    if n_train:
        from tests.synthetic_mnist import write_synthetic_mnist
        data = write_synthetic_mnist(root / "data", n_train=n_train, n_test=1000)
    config["data_loader"]["args"]["data_dir"] = str(data)
    config["trainer"].update(save_dir=str(root / "saved"), epochs=1, verbosity=0, tensorboard=False)
    config["tune"] = {"trials": 1, "sampler": {"type": "TPESampler", "args": {"seed": 0}},
                      "space": {"optimizer.args.lr": {"type": "float", "low": 1e-4, "high": 3e-2, "log": True}}}
    path = root / "config.json"
    path.write_text(json.dumps(config, indent=2))
    return path


def overhead(config, reps):
    tune_s, train_s = [], []
    for rep in range(reps):  # alternated, so that a slow spell of the machine hits both
        pair = [("tune", ["tune.py", "-c", config, "--study", f"o{rep}", "--lr", "0.001"]),
                ("train", ["train.py", "-c", config, "--lr", "0.001"])]
        for name, args in pair if rep % 2 == 0 else pair[::-1]:
            (tune_s if name == "tune" else train_s).append(run(args)[0])
    return {"tune_s": tune_s, "train_s": train_s,
            "ratio": statistics.median(tune_s) / statistics.median(train_s)}


def pruning(config):
    import optuna

    result = {}
    # pruning after epoch 1 against the median of the trials so far: the saving pruning can give in 3 epochs
    for name, pruner in (("median", {"type": "MedianPruner", "args": {"n_startup_trials": 2, "n_warmup_steps": 0}}),
                         ("none", None)):
        run(["tune.py", "-c", config, "--study", f"p_{name}", "--trials", "12", "-o", "trainer.epochs=3",
             "-o", 'tune.space={"optimizer.args.lr": {"type": "float", "low": 1e-5, "high": 0.1, "log": true}}',
             "-o", f"+tune.pruner={json.dumps(pruner)}"])
        study = optuna.load_study(study_name=f"p_{name}",
                                  storage=f"sqlite:///{Path(config).parent / 'saved' / 'tune' / f'p_{name}.db'}")
        result[name] = {"epochs": sum(t.user_attrs.get("epochs", 0) for t in study.trials),
                        "best": study.best_value}
    result["epochs_ratio"] = result["median"]["epochs"] / result["none"]["epochs"]
    return result


def workers(config):
    args = ["-c", str(config), "--study", "w", "--trials", "8"]
    command = [sys.executable, "-c", PROBE.format(tag=TAG), *args]
    start = time.perf_counter()
    procs = [subprocess.Popen(command, cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate()[0] for p in procs]
    wall = time.perf_counter() - start
    reports = [json.loads(x[len(TAG):]) for out in outs for x in out.splitlines() if x.startswith(TAG)]
    return {"wall_s": wall, "db_seconds_per_worker": [r["db_seconds"] for r in reports],
            "return_codes": [p.returncode for p in procs]}


def memory(config):
    _, report = run(["tune.py", "-c", str(config), "--study", "m", "--trials", "20"], probe=True)
    rss = report["rss_mib"]
    return {"rss_after_trial_mib": rss, "growth_2_to_20": rss[-1] / rss[1] - 1}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--n-train", type=int, default=6000, help="synthetic samples; 0: the real MNIST")
    parser.add_argument("--only", nargs="*", default=["overhead", "pruning", "workers", "memory"])
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        config = make_config(Path(tmp), args.n_train)
        steps = {"overhead": lambda: overhead(config, args.reps), "pruning": lambda: pruning(config),
                 "workers": lambda: workers(config), "memory": lambda: memory(config)}
        for name in args.only:
            results[name] = steps[name]()
            print(name, json.dumps(results[name], indent=1), flush=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
