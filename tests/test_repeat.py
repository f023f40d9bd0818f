"""repeat.py: a config over N seeds as named runs NAME-seed<k>, continued (never retrained) when the command
runs again, SIGKILL included, and ended by the compare table of the seeds."""
import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.helpers.cli import run_script
from tests.helpers.configs import shrink_config, write_config
from tests.helpers.paths import REPO


def repeat(*args, timeout=300):
    return run_script("repeat.py", *args, timeout=timeout, env={"OMP_NUM_THREADS": "1"})


def epochs_in(folder):
    with (folder / "metrics.csv").open() as handle:
        return [int(row["epoch"]) for row in csv.DictReader(handle)]


@pytest.mark.slow
def test_two_seeds_then_the_same_command_trains_nothing(tmp_path, synthetic_data_dir):
    config = write_config(tmp_path, shrink_config(tmp_path, synthetic_data_dir, epochs=1, verbosity=0))
    first = repeat("-c", config, "--seeds", "2", "--run_id", "rep")
    assert first.returncode == 0, first.stderr
    runs = tmp_path / "saved" / "models" / "Mnist_LeNet"
    assert sorted(p.name for p in runs.iterdir()) == ["rep-seed1", "rep-seed2"]
    assert [json.loads((runs / f"rep-seed{k}" / "config.json").read_text())["seed"] for k in (1, 2)] == [1, 2]
    header, row = first.stdout.splitlines()[-3:-1]
    assert header.split()[:3] == ["run", "n", "state"] and row.split()[:3] == ["rep-seed*", "2", "finished"]
    assert "±" in row and first.stdout.splitlines()[-1] == f"Compare again: python compare.py {runs}/rep-seed*"
    stamps = {p: p.stat().st_mtime_ns for p in runs.glob("*/*") if p.is_file()}
    again = repeat("-c", config, "--seeds", "2", "--run_id", "rep")
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[:2] == [f"rep-seed{k}: finished after epoch 1; not trained again" for k in (1, 2)]
    assert again.stdout.splitlines()[-2].split()[:3] == ["rep-seed*", "2", "finished"]  # not held by itself
    assert {p: p.stat().st_mtime_ns for p in runs.glob("*/*") if p.is_file()} == stamps
    assert not list(runs.glob("*/.lock"))  # a skipped seed's lock is let go


@pytest.mark.parametrize("args, line", [
    (["--seeds", "0"], "error: argument --seeds: invalid positive_int value: '0'; see python repeat.py --help"),
    (["--seeds", "2", "-o", "trainer.epoch=3"], "error: unknown config key trainer.epoch; did you mean"),
    (["--seeds", "10", "--run_id", "x" * 94], "error: run name 'xxxxx"),  # x...x-seed10: 101 characters
])
def test_bad_input_is_one_line(tmp_path, synthetic_data_dir, args, line):
    config = write_config(tmp_path, shrink_config(tmp_path, synthetic_data_dir))
    done = repeat("-c", config, *args)
    assert done.returncode == 2 and done.stderr.startswith(line) and len(done.stderr.splitlines()) == 1, done.stderr
    assert not (tmp_path / "saved").exists()  # refused before the first seed trains


def test_a_missing_config_is_one_line(tmp_path):
    done = repeat("-c", tmp_path / "nope.json", "--seeds", "2")
    assert done.returncode == 2 and done.stderr == f"error: config file {tmp_path / 'nope.json'} does not exist; " \
        "give a config, or a run's config.json such as saved/models/<name>/<run>/config.json\n"


@pytest.mark.slow
def test_a_sigkilled_repeat_continues_and_trains_no_seed_twice(tmp_path, synthetic_data_dir):
    epochs = 8
    config = write_config(tmp_path, shrink_config(tmp_path, synthetic_data_dir, epochs=epochs, verbosity=1,
                                                  save_period=epochs))
    runs = tmp_path / "saved" / "models" / "Mnist_LeNet"
    command = [sys.executable, "repeat.py", "-c", str(config), "--seeds", "2", "--run_id", "rep",
               "-o", "data_loader.args.batch_size=16"]
    job = subprocess.Popen(command, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"},
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while not (runs / "rep-seed2" / "metrics.csv").is_file():  # seed 1 done, seed 2 one epoch in
        assert job.poll() is None and time.monotonic() < deadline, "repeat.py ended before seed 2 began"
        time.sleep(0.02)
    job.send_signal(signal.SIGKILL)
    job.wait()
    killed_at = epochs_in(runs / "rep-seed2")
    assert 1 <= len(killed_at) < epochs, "seed 2 ended before the kill: nothing to continue"
    seed1 = {p: p.stat().st_mtime_ns for p in (runs / "rep-seed1").iterdir()}
    again = subprocess.run(command, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                           text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    lines = again.stdout.splitlines()
    assert lines[0] == f"rep-seed1: finished after epoch {epochs}; not trained again"
    assert lines[1] == f"rep-seed2: continues after epoch {killed_at[-1]} (seed 2)"
    assert {p: p.stat().st_mtime_ns for p in (runs / "rep-seed1").iterdir()} == seed1  # seed 1 untouched
    assert epochs_in(runs / "rep-seed1") == epochs_in(runs / "rep-seed2") == list(range(1, epochs + 1))
    info = (tmp_path / "saved" / "log" / "Mnist_LeNet" / "rep-seed2" / "info.log").read_text()
    assert f"Resume training from epoch {killed_at[-1] + 1}" in info  # its epochs before the kill stay as they were
    assert lines[-2].split()[:3] == ["rep-seed*", "2", "finished"]
