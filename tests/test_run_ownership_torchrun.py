"""Run ownership under real torchrun agents (gloo, CPU): the job's identity, restarts under `-r`,
workers that die with their agent, a broken checkpoint or a full disk on two ranks.

Every run is bounded in time (tests/helpers/torchrun.py); the fixtures elastic_setup and reference
(tests/conftest.py) are those of test_elastic.py.
"""
import os
import re
import signal
import time

import pandas as pd
import pytest
import torch

from runs import lock as run_lock
from tests.helpers.configs import write_config
from tests.helpers.elastic import KILL_AT
from tests.helpers.network import free_port
from tests.helpers.paths import REPO
from tests.helpers.runs import run_dirs, same_weights
from tests.helpers.snapshots import snapshot_bytes
from tests.helpers.tmpfs import tmpfs
from tests.helpers.torchrun import RUN_LIMIT, alive, finish, kill_worker_at, start, torchrun

pytestmark = pytest.mark.slow

# rank 0 of the first worker group dies at once, before anything (its run folder included) exists
DIE_FIRST = """
import os, runpy, sys
if os.environ["RANK"] == "0" and os.environ["TORCHELASTIC_RESTART_COUNT"] == "0":
    os._exit(1)
sys.path.insert(0, os.getcwd())
sys.argv = ["train.py", *sys.argv[1:]]
runpy.run_path("train.py", run_name="__main__")
"""


def with_save_dir(config, save_dir, **trainer):
    return {**config, "trainer": {**config["trainer"], "save_dir": str(save_dir), **trainer}}


def test_a_job_reusing_a_rdzv_id_never_continues_another_jobs_run(elastic_setup, tmp_path):
    _, config = elastic_setup
    cfg = write_config(tmp_path, with_save_dir(config, tmp_path / "saved", epochs=1))
    rdzv = ["--nnodes=1", "--nproc_per_node=2", "--max-restarts=1", "--rdzv_backend=c10d", "--rdzv_id=fixed"]
    first = start(torchrun(*rdzv, f"--rdzv_endpoint=127.0.0.1:{free_port()}", "train.py", "-c", cfg), REPO,
                  log := tmp_path / "first.log")
    assert finish([first], time.monotonic() + RUN_LIMIT) == [0], log.read_text()[-3000:]
    (earlier,) = run_dirs(tmp_path / "saved")
    before = snapshot_bytes(earlier)
    script = tmp_path / "die_first.py"
    script.write_text(DIE_FIRST)
    second = start(torchrun(*rdzv, f"--rdzv_endpoint=127.0.0.1:{free_port()}", script, "-c", cfg), REPO,
                   log := tmp_path / "second.log")
    assert finish([second], time.monotonic() + RUN_LIMIT) == [0], log.read_text()[-3000:]
    runs = run_dirs(tmp_path / "saved")
    assert len(runs) == 2 and snapshot_bytes(earlier) == before  # the earlier job's run is untouched
    (new,) = [r for r in runs if r != earlier]
    assert pd.read_csv(new / "metrics.csv")["epoch"].tolist() == [1]


def test_restarts_under_r_continue_from_the_runs_newest_checkpoint(elastic_setup, reference, tmp_path):
    tmp, config = elastic_setup
    (ref_run,) = run_dirs(tmp / "reference")
    start_from = tmp_path / "start" / "checkpoint-epoch1.pth"
    start_from.parent.mkdir()
    start_from.write_bytes((ref_run / "checkpoint-epoch1.pth").read_bytes())
    deadline = time.monotonic() + RUN_LIMIT
    agent = start(torchrun("--standalone", "--nproc_per_node=2", "--max-restarts=2", "train.py", "-r", start_from),
                  REPO, log := tmp_path / "torchrun.log")
    kill_worker_at([agent], [log], KILL_AT, rank=1, deadline=deadline)
    assert finish([agent], deadline) == [0], log.read_text()[-3000:]
    info = (start_from.parent / "info.log").read_text()
    resumed = re.findall(r"Resume training from epoch (\d+)(?:, batch (\d+))?", info)
    assert resumed[0] == ("2", "") and resumed[1][0] == "2" and int(resumed[1][1]) > 15, resumed  # not FILE again
    assert pd.read_csv(start_from.parent / "metrics.csv")["epoch"].tolist() == [2, 3]
    assert same_weights(torch.load(start_from.parent / "model_latest.pth", weights_only=True)["state_dict"], reference)


def test_fine_tuning_under_restarts_makes_one_run_folder(elastic_setup, tmp_path):
    tmp, config = elastic_setup
    (ref_run,) = run_dirs(tmp / "reference")
    partial = write_config(tmp_path, {"trainer": {**config["trainer"], "save_dir": str(tmp_path / "saved")}},
                           "partial.json")
    deadline = time.monotonic() + RUN_LIMIT
    agent = start(torchrun("--standalone", "--nproc_per_node=2", "--max-restarts=2", "train.py", "-c", partial,
                           "-r", ref_run / "checkpoint-epoch1.pth"), REPO, log := tmp_path / "torchrun.log")
    kill_worker_at([agent], [log], KILL_AT, rank=1, deadline=deadline)
    assert finish([agent], deadline) == [0], log.read_text()[-3000:]
    (run,) = run_dirs(tmp_path / "saved")
    assert pd.read_csv(run / "metrics.csv")["epoch"].tolist() == [2, 3]


def live_workers(marker):
    """pids of processes whose environment holds `marker` (the workers of one test's agent)."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/environ", "rb") as handle:
                    environ = handle.read()
                if marker.encode() in environ and b"LOCAL_RANK=" in environ:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_workers_stop_when_their_agent_is_killed_and_free_the_run(elastic_setup, tmp_path):
    _, config = elastic_setup
    cfg = write_config(tmp_path, with_save_dir(config, tmp_path / "saved", epochs=100))
    marker = f"OWNERSHIP_TEST={os.getpid()}{time.monotonic_ns()}"
    os.environ[marker.split("=")[0]] = marker.split("=")[1]
    try:
        agent = start(torchrun("--standalone", "--nproc_per_node=2", "train.py", "-c", cfg, "--run_id", "held"),
                      REPO, log := tmp_path / "torchrun.log")
    finally:
        del os.environ[marker.split("=")[0]]
    try:
        deadline = time.monotonic() + RUN_LIMIT
        while "Train Epoch: 1 [5/" not in log.read_text():
            assert agent.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.05)
        workers = [pid for pid in live_workers(marker) if pid != agent.pid]
        assert len(workers) == 2
        agent.send_signal(signal.SIGKILL)
        agent.wait()
        # gone (not even a zombie whose other threads still hold the lock), and the run free
        gone_by = time.monotonic() + 10
        while any(alive(pid) for pid in workers) or run_lock.holder(run_dirs(tmp_path / "saved")[0]):
            assert time.monotonic() < gone_by, "workers outlived their agent, or the run stayed held"
            time.sleep(0.1)
    finally:
        for pid in live_workers(marker):
            os.kill(pid, signal.SIGKILL)


def test_a_truncated_newest_checkpoint_on_two_ranks_falls_back(elastic_setup, tmp_path):
    _, config = elastic_setup
    cfg = write_config(tmp_path, with_save_dir(config, tmp_path / "saved", epochs=1))
    command = torchrun("--standalone", "--nproc_per_node=2", "train.py", "-c", cfg, "--run_id", "t")
    assert finish([start(command, REPO, log := tmp_path / "first.log")], time.monotonic() + RUN_LIMIT) == [0], \
        log.read_text()[-3000:]
    (run,) = run_dirs(tmp_path / "saved")
    latest = run / "model_latest.pth"
    latest.write_bytes(latest.read_bytes()[:5000])
    again = start([*command, "-o", "trainer.epochs=2"], REPO, log := tmp_path / "again.log")
    assert finish([again], time.monotonic() + RUN_LIMIT) == [0], log.read_text()[-3000:]
    text = log.read_text()
    assert text.count("is truncated or corrupt; resuming from checkpoint-epoch1.pth") == 1  # rank 0 says it once
    assert pd.read_csv(run / "metrics.csv")["epoch"].tolist() == [1, 2]


def test_a_full_disk_on_two_ranks_is_one_line_each_and_no_traceback_of_ours(elastic_setup, tmp_path):
    _, config = elastic_setup
    with tmpfs(tmp_path / "small", "64k") as small:
        (small / "filler").write_bytes(b"x" * 40_000)
        cfg = write_config(tmp_path, with_save_dir(config, small / "saved", epochs=1))
        agent = start(torchrun("--standalone", "--nproc_per_node=2", "train.py", "-c", cfg, "--run_id", "full"), REPO,
                      log := tmp_path / "torchrun.log")
        assert finish([agent], time.monotonic() + RUN_LIMIT) != [0]
    text = log.read_text()
    # the one traceback is torchrun's own report of the exit; none comes from a worker
    assert text.count("Traceback (most recent call last)") == 1 and "ChildFailedError" in text, text[-4000:]
    ours = text.split("Traceback")[0]
    errors = [line for line in ours.splitlines() if "error:" in line]
    assert errors and all(line.startswith("error: ") for line in errors), errors
    assert any("could not save" in line and "no space left on the device" in line for line in errors), errors
    assert "exitcode  : 74" in text or "exit code 74" in text.lower() or "(exitcode: 74)" in text, text[-2000:]
    assert "gloo" not in ours.lower() and "RuntimeError" not in ours
