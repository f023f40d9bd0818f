"""How a run writes its files: interval saves counted from the last save, temp files of live
writers left alone, every file on disk (fsync) before it takes its real name."""
import os
import subprocess
import sys

import pytest

from runs.checkpointer import Checkpointer
from runs.files import LATEST
from tests.helpers.cli import train_in_process
from tests.helpers.configs import shrink_config, write_config
from tests.helpers.paths import REPO
from utils.atomic import atomic_write


def test_interval_saves_count_from_the_last_save_of_either_kind(tmp_path, synthetic_data_dir, monkeypatch,
                                                                 one_thread):
    saves = []
    real = Checkpointer.write
    monkeypatch.setattr(Checkpointer, "write", lambda self, state, names, *args: (
        saves.append((state["epoch"], state["resume_batch"], tuple(names))), real(self, state, names, *args)))
    cfg = shrink_config(tmp_path, synthetic_data_dir, epochs=2, checkpoint_interval=4)  # 9 steps an epoch
    train_in_process("-c", write_config(tmp_path, cfg))
    interval = [(epoch, batch) for epoch, batch, names in saves if names == (LATEST,)]
    # steps 4 and 8 of each epoch; the epoch's own save follows step 9 and restarts the count
    assert interval == [(0, 4), (0, 8), (1, 4), (1, 8)]


def test_a_save_leaves_the_temp_files_of_live_writers_alone(tmp_path, synthetic_data_dir, monkeypatch):
    cfg = shrink_config(tmp_path, synthetic_data_dir, epochs=1)
    path = write_config(tmp_path, cfg)
    config = train_in_process("-c", path, "--run_id", "r")
    run = config.save_dir
    writer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])  # test.py writing beside us
    try:
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout.strip()
        live_temp = run / f".model_best.test.json.tmp{writer.pid}"
        dead_temp = run / f".model_latest.pth.tmp{dead}"
        live_temp.write_text("{")
        dead_temp.write_bytes(b"half a checkpoint")
        train_in_process("-c", path, "--run_id", "r", "-o", "trainer.epochs=2")
        assert live_temp.exists()  # its writer renames it when done
        assert not dead_temp.exists()  # nobody will: swept
    finally:
        writer.kill()


SWEEP = ("import sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]); "
         "from utils.atomic import _remove_stale_temps; _remove_stale_temps(Path(sys.argv[2]))")


def test_a_save_from_another_host_leaves_a_live_writers_temp_file_alone(tmp_path):
    """test.py on a login node saves beside a training on a compute node (shared storage): our pids mean
    nothing there, so its sweep must not take our temp file."""
    def write(handle):
        handle.write(b"half a checkpoint")
        as_another_host = 'hostname other-node && exec "$0" -c "$1" "$2" "$3"'
        swept = subprocess.run(["unshare", "--pid", "--uts", "--fork", "sh", "-c", as_another_host, sys.executable,
                                SWEEP, str(REPO), str(tmp_path)], capture_output=True, text=True)
        if swept.returncode != 0:
            pytest.skip(f"cannot play another host here (unshare, needs root): {swept.stderr.strip()}")

    atomic_write(tmp_path / "model_latest.pth", write)
    assert (tmp_path / "model_latest.pth").read_bytes() == b"half a checkpoint"


def test_every_file_is_fsynced_before_it_takes_its_real_name(tmp_path, synthetic_data_dir, monkeypatch):
    synced, renamed = set(), []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        synced.add(os.fstat(fd).st_ino)  # by inode: a pending file is renamed twice (temp, pending, real name)
        return real_fsync(fd)

    def replace(src, dst):
        renamed.append((str(src), os.stat(src).st_ino in synced))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    cfg = shrink_config(tmp_path, synthetic_data_dir, epochs=1, checkpoint_interval=4)
    train_in_process("-c", write_config(tmp_path, cfg), "--run_id", "f")
    monkeypatch.undo()
    names = {os.path.basename(src).split(".tmp")[0].strip(".") for src, _ in renamed}
    assert {"model_latest.pth.pending", "checkpoint-epoch1.pth.pending", "metrics.csv.pending", "model_latest.pth",
            "config.json", "provenance.json", "run.json", "commit.json"} <= names
    assert renamed and all(was_synced for _, was_synced in renamed), [src for src, ok in renamed if not ok]
