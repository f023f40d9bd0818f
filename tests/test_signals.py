"""SIGTERM and Ctrl-C: finish the batch, save model_latest.pth with the position in the
epoch, say how to resume, exit 143 / 130; a second Ctrl-C aborts at once."""
import os
import re
import signal
import subprocess
import sys

import pytest
import torch

import trainer.trainer as trainer_module
from tests.helpers.cli import run_cli
from tests.helpers.configs import shrink_config, write_config
from tests.helpers.paths import REPO
from tests.helpers.runs import run_dirs
from tests.synthetic_mnist import write_synthetic_mnist

N_TRAIN, BATCH = 2000, 4
BATCHES_PER_EPOCH = (N_TRAIN - N_TRAIN // 10) // BATCH  # 450 small batches: time to signal mid-epoch
STOPPED = re.compile(r"Stopped by (SIG\w+) in epoch (\d+) after (\d+) batches; state saved\. "
                     r"Resume with: python train\.py -r (\S+)")
# one torch thread: with tiny batches on a small shared machine, a thread pool only waits
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def long_epoch_config(tmp_path_factory):
    """2 epochs of 450 small batches, every batch logged: a signal lands mid-epoch."""
    tmp = tmp_path_factory.mktemp("signals")
    data = write_synthetic_mnist(tmp / "data", n_train=N_TRAIN, n_test=10)
    return shrink_config(tmp, data, log_step=1, verbosity=2)


def start_training(tmp_path, config):
    config = {**config, "trainer": {**config["trainer"], "save_dir": str(tmp_path / "saved")}}
    config["data_loader"]["args"]["batch_size"] = BATCH
    return subprocess.Popen([sys.executable, "train.py", "-c", str(write_config(tmp_path, config))], cwd=REPO,
                            env=ENV, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def signal_mid_epoch(process, signum):
    """Send `signum` once the third batch of epoch 1 is logged; return everything the process printed."""
    seen = []
    for line in process.stdout:
        seen.append(line)
        if "Train Epoch: 1 [3/" in line:
            process.send_signal(signum)
            break
    else:
        pytest.fail("training ended before its third batch:\n" + "".join(seen) + process.stderr.read())
    stdout, stderr = process.communicate(timeout=60)
    return "".join(seen) + stdout, stderr


def check_stopped(stdout, stderr, tmp_path, signame):
    """The stop message, and the checkpoint it names: position inside an epoch, loadable safely."""
    assert "Traceback" not in stderr, stderr
    match = STOPPED.search(stdout)
    assert match, stdout[-2000:]
    assert match.group(1) == signame
    epoch, batches = int(match.group(2)), int(match.group(3))
    (run,) = run_dirs(tmp_path / "saved")
    latest = run / "model_latest.pth"
    assert match.group(4) == str(latest)
    checkpoint = torch.load(latest, weights_only=True)
    assert (checkpoint["epoch"], checkpoint["resume_batch"]) == (epoch - 1, batches)
    assert 0 < batches < BATCHES_PER_EPOCH
    assert checkpoint["data_stream"] == {"data_pass": epoch, "samples": batches * BATCH}
    assert checkpoint["train_metrics"][0]["counts"]["loss"] == batches * BATCH
    return run, checkpoint


@pytest.mark.slow
def test_sigterm_saves_mid_epoch_and_resume_finishes(tmp_path, long_epoch_config):
    process = start_training(tmp_path, long_epoch_config)
    stdout, stderr = signal_mid_epoch(process, signal.SIGTERM)
    assert process.returncode == 143, stderr
    run, checkpoint = check_stopped(stdout, stderr, tmp_path, "SIGTERM")

    resumed = subprocess.run([sys.executable, "train.py", "-r", str(run / "model_latest.pth")], cwd=REPO,
                             env=ENV, text=True, capture_output=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    where = f"epoch {checkpoint['epoch'] + 1}, batch {checkpoint['resume_batch'] + 1}"
    assert f"Resume training from {where}" in resumed.stdout
    assert run_dirs(tmp_path / "saved") == [run], "resuming must continue in the same run folder"
    final = torch.load(run / "model_latest.pth", weights_only=True)
    assert (final["epoch"], final["resume_batch"]) == (2, 0)
    assert final["global_step"] == 2 * BATCHES_PER_EPOCH
    assert (run / "metrics.csv").read_text().count("\n") == 3  # header and epochs 1, 2


@pytest.mark.slow
def test_sigint_saves_and_exits_130(tmp_path, long_epoch_config):
    process = start_training(tmp_path, long_epoch_config)
    stdout, stderr = signal_mid_epoch(process, signal.SIGINT)
    assert process.returncode == 130, stderr
    check_stopped(stdout, stderr, tmp_path, "SIGINT")


def test_second_ctrl_c_aborts_the_save(tmp_path, small_config, monkeypatch, capsys):
    """Ctrl-C, then Ctrl-C again while the checkpoint is being written: exit 130 at once,
    and the half-written temp file is removed."""

    run_batch, save = trainer_module.Trainer._run_batch, torch.save

    def run_batch_then_ctrl_c(self, *args, **kwargs):
        signal.raise_signal(signal.SIGINT)
        return run_batch(self, *args, **kwargs)

    def save_interrupted_halfway(obj, handle, *args, **kwargs):
        handle.write(b"PK\x03\x04 half a checkpoint")
        handle.flush()
        signal.raise_signal(signal.SIGINT)  # the second Ctrl-C
        save(obj, handle, *args, **kwargs)

    monkeypatch.setattr(trainer_module.Trainer, "_run_batch", run_batch_then_ctrl_c)
    monkeypatch.setattr(torch, "save", save_interrupted_halfway)
    handler_before = signal.getsignal(signal.SIGINT)
    code, _, err = run_cli("train", ["-c", small_config], monkeypatch, capsys)
    assert code == 130
    assert err == "Aborted by Ctrl-C; the last completed checkpoint is intact.\n"
    (run,) = run_dirs(tmp_path / "saved")
    assert not list(run.glob("*.pth")) and not list(run.glob(".*tmp*")), sorted(p.name for p in run.iterdir())
    assert signal.getsignal(signal.SIGINT) is handler_before


def test_signal_during_validation_stops_after_the_epoch(tmp_path, small_config, monkeypatch, capsys):
    """No batch is left to finish: the epoch's own checkpoint is the place to resume."""

    valid_epoch = trainer_module.Trainer._valid_epoch

    def valid_epoch_then_sigterm(self, epoch):
        signal.raise_signal(signal.SIGTERM)
        return valid_epoch(self, epoch)

    monkeypatch.setattr(trainer_module.Trainer, "_valid_epoch", valid_epoch_then_sigterm)
    assert run_cli("train", ["-c", small_config], monkeypatch).returncode == 143
    (run,) = run_dirs(tmp_path / "saved")
    latest = torch.load(run / "model_latest.pth", weights_only=True)
    assert (latest["epoch"], latest["resume_batch"], latest["global_step"]) == (1, 0, 9)
    assert f"Stopped by SIGTERM after epoch 1; state saved. Resume with: python train.py -r {run}/model_latest.pth" \
        in capsys.readouterr().out
