"""Console output: a tqdm bar on a terminal, plain lines in a pipe, each said once, and the
per-epoch block and end-of-training summary with commands that work as printed."""
import fcntl
import json
import os
import re
import select
import shlex
import struct
import subprocess
import sys
import termios
import time

import pandas as pd
import pytest

from runs.folder import resume_command
from tests.helpers.cli import train_in_process
from tests.helpers.configs import shrink_config, write_config
from tests.helpers.paths import REPO
from tests.helpers.runs import run_dirs
from trainer import progress
from utils import distributed as dist

# every tqdm update redraws (default: at most every 0.1 s), so short epochs show all the fields
FAST_ENV = {"TQDM_MININTERVAL": "0", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "TERM": "xterm"}
BAR = re.compile(r"Epoch 1: +\d+%\|.*\| *\d+/17 \[\d\d:\d\d<\d\d:\d\d, +[\d.]+batch/s, loss=\d\.\d{4}, samples/s=\d+\]")


def sized_pty(columns=120, rows=40):
    """A pseudo-terminal (master, slave) with a size, as a terminal window has."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    return master, slave


def run_in_terminal(script, *args, timeout=120):
    """Run an entry point with stdout and stderr on a pseudo-terminal; return (exit code, screen text)."""
    master, slave = sized_pty()
    process = subprocess.Popen([sys.executable, str(REPO / script), *map(str, args)], cwd=REPO,
                               stdin=slave, stdout=slave, stderr=slave, env={**os.environ, **FAST_ENV})
    os.close(slave)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if select.select([master], [], [], 0.5)[0]:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: every writer has closed the terminal
                    break
                if not chunk:
                    break
                chunks.append(chunk)
        else:
            pytest.fail(f"{script} did not finish within {timeout} s")
        code = process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
        os.close(master)
    return code, b"".join(chunks).decode(errors="replace").replace("\r\n", "\n")


def printed_lines(text):
    """What stays on the screen: each line after its last carriage return (bar redraws dropped)."""
    return [line.rsplit("\r", 1)[-1] for line in text.split("\n")]


def check_blocks_and_summary(lines, run, history):
    """The per-epoch block (values as in metrics.csv, to 6 significant digits) and the summary, each exactly once."""
    for row in history.itertuples(index=False):
        block_start = lines.index(f"    epoch          : {row.epoch}")
        block = dict(line.split(":", 1) for line in lines[block_start:block_start + len(row)])
        assert {key.strip(): float(value) for key, value in block.items()} == pytest.approx(row._asdict(), rel=1e-5)
        assert lines.count(f"    epoch          : {row.epoch}") == 1
    best = history.loc[history["val_loss"].idxmin()]
    summary = [f"Training finished after epoch {len(history)}.",
               f"Best val_loss: {best['val_loss']:.6g} at epoch {int(best['epoch'])}",
               f"Checkpoints: {run}",
               f"Train further: python train.py -r {run / 'model_latest.pth'} -o trainer.epochs={2 * len(history)}",
               f"Test:   python test.py -r {run / 'model_best.pth'}"]
    for line in summary:
        assert lines.count(line) == 1, line
    assert sum(line.startswith("Logs and TensorBoard: ") for line in lines) == 1
    assert lines.count("MnistModel(") == 1


def command_args(lines, prefix):
    """The arguments of the printed 'Resume: python train.py ...' or 'Test: python test.py ...' line."""
    (line,) = [line for line in lines if line.startswith(prefix)]
    return shlex.split(line.removeprefix(prefix))[2:]


@pytest.fixture
def config_path(tmp_path, synthetic_data_dir):
    cfg = shrink_config(tmp_path, synthetic_data_dir)
    cfg["data_loader"]["args"]["batch_size"] = 32  # 17 batches per epoch, a bar redraw at each
    return write_config(tmp_path, cfg)


@pytest.mark.slow
def test_terminal_shows_a_bar_and_the_printed_commands_work(config_path, tmp_path):
    code, screen = run_in_terminal("train.py", "-c", config_path)
    assert code == 0, screen
    (run,) = run_dirs(tmp_path / "saved")
    history = pd.read_csv(run / "metrics.csv")
    assert BAR.search(screen), screen[-3000:]  # batches done/total, ETA, batches/s, running loss, samples/s
    assert re.search(r"Epoch 2: +\d+%\|", screen)
    assert re.search(r"Valid: +\d+%\|.*\| *\d/2 \[.*loss=\d\.\d{4}", screen)  # 60 validation samples / 32
    assert "Train Epoch:" not in screen  # the bar replaces the log lines
    lines = printed_lines(screen)
    check_blocks_and_summary(lines, run, history)

    test_args = command_args(lines, "Test:   ")
    code, test_screen = run_in_terminal("test.py", *test_args)
    assert code == 0, test_screen
    assert re.search(r"Test: +\d+%\|.*\| *\d+/7 \[", test_screen)  # 200 test samples / 32
    results = json.loads((run / "model_best.test.json").read_text())  # beside the checkpoint it evaluated
    assert results["checkpoint"] == test_args[-1] and results["n_samples"] == 200
    table = [f"    {key:9s}: {value:.6f}" for key, value in results["metrics"].items()] + ["    samples  : 200"]
    test_lines = printed_lines(test_screen)
    assert test_lines[test_lines.index(table[0]):][:4] == table
    assert list(results["metrics"]) == ["loss", "accuracy", "top_k_acc"]

    resumed = train_in_process(*command_args(lines, "Train further: "))  # the finished run goes on
    assert resumed.save_dir == run
    assert pd.read_csv(run / "metrics.csv")["epoch"].tolist() == [1, 2, 3, 4]


def test_pipe_gets_plain_lines_once_and_the_resolved_config(tmp_path, synthetic_data_dir, capsys):
    # pytest captures stdout and stderr: neither is a terminal
    train_in_process("-c", write_config(tmp_path, shrink_config(tmp_path, synthetic_data_dir, log_step=2)))
    captured = capsys.readouterr()
    (run,) = run_dirs(tmp_path / "saved")
    assert "\r" not in captured.out + captured.err and "batch/s" not in captured.out + captured.err
    lines = captured.out.splitlines()
    train_lines = [line for line in lines if line.startswith("Train Epoch:")]
    # 9 batches of 64 per epoch, logged every 2nd: batches 1, 3, 5, 7, 9
    expected = [f"Train Epoch: {e} [{b}/9 ({100 * b / 9:.0f}%)] Loss: " for e in (1, 2) for b in range(1, 10, 2)]
    assert [line[:line.index("Loss: ") + 6] for line in train_lines] == expected
    assert len(set(train_lines)) == len(train_lines)
    check_blocks_and_summary(lines, run, pd.read_csv(run / "metrics.csv"))
    (resolved,) = [line for line in lines if line.startswith("Resolved config: ")]
    assert json.loads(resolved.removeprefix("Resolved config: ")) == json.loads((run / "config.json").read_text())


def test_verbosity_1_prints_the_blocks_but_no_config_or_batch_lines(config_path, capsys):
    train_in_process("-c", config_path, "-o", "trainer.verbosity=1", "-o", "trainer.epochs=1",
                     "-o", "+trainer.len_epoch=3")
    out = capsys.readouterr().out
    assert "    epoch          : 1" in out and "Train further: python train.py -r " in out
    assert "Resolved config" not in out and "Train Epoch:" not in out


@pytest.mark.parametrize("env, launch", [
    ({}, "python train.py"),
    ({"WORLD_SIZE": "4", "LOCAL_WORLD_SIZE": "4"}, "torchrun --nproc_per_node=4 train.py"),
    ({"WORLD_SIZE": "8", "LOCAL_WORLD_SIZE": "4"}, "torchrun --nproc_per_node=4 --nnodes=2 <your rendezvous options> "
                                                   "train.py")])
def test_printed_resume_commands_launch_as_the_run_was_launched(monkeypatch, tmp_path, env, launch):
    for key in ("WORLD_SIZE", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert resume_command(tmp_path / "a run") == f"{launch} -r '{tmp_path / 'a run' / 'model_latest.pth'}'"


class FakeTerminal:
    """isatty() True, no file descriptor: the width is unknown."""

    def isatty(self):
        return True


def test_bar_only_for_a_sized_terminal_on_rank_0_at_verbosity_1_or_more(monkeypatch):
    assert progress.use_progress_bar(1, FakeTerminal())
    assert not progress.use_progress_bar(0, FakeTerminal())
    with open(os.devnull, "w") as not_a_terminal:
        assert not progress.use_progress_bar(2, not_a_terminal)
    master, slave = sized_pty()
    with os.fdopen(slave, "w") as terminal:
        assert progress.use_progress_bar(2, terminal)
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 0, 0, 0, 0))  # nobody sized it
        assert not progress.use_progress_bar(2, terminal)  # tqdm would draw nothing: log lines instead
    os.close(master)
    monkeypatch.setattr(dist, "is_main_process", lambda: False)
    assert not progress.use_progress_bar(2, FakeTerminal())  # other DDP ranks: rank 0 alone draws
