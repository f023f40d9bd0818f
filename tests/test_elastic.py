"""Lost workers and resubmitted jobs end with the weights of a run never interrupted.

Real torchrun agents (gloo, CPU) on synthetic MNIST: a worker SIGKILLed in epoch 2 and
restarted by `--max-restarts`, a `--run_id` job SIGKILLed and run again, and two agents
(`--nnodes=2`, c10d rendezvous on 127.0.0.1) each in its own copy of the project and its own
save_dir. Every run is bounded in time: a hang fails the test instead of stalling CI.
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch

from tests.helpers.configs import write_config
from tests.helpers.elastic import KILL_AT, final_weights
from tests.helpers.network import free_port
from tests.helpers.paths import REPO
from tests.helpers.runs import run_dirs, same_weights
from tests.helpers.torchrun import RUN_LIMIT, finish, kill_worker_at, start, torchrun

pytestmark = pytest.mark.slow


def test_a_killed_worker_is_restarted_and_the_run_ends_as_if_never_killed(elastic_setup, reference, tmp_path):
    _, config = elastic_setup
    cfg = {**config, "trainer": {**config["trainer"], "save_dir": str(tmp_path / "saved")}}
    log = tmp_path / "torchrun.log"
    deadline = time.monotonic() + RUN_LIMIT
    agent = start(torchrun("--standalone", "--nproc_per_node=2", "--max-restarts=2", "train.py", "-c",
                           write_config(tmp_path, cfg)), REPO, log)
    kill_worker_at([agent], [log], KILL_AT, rank=1, deadline=deadline)
    assert finish([agent], deadline) == [0], log.read_text()[-3000:]

    (run,) = run_dirs(tmp_path / "saved")
    assert [p.name for p in (tmp_path / "saved" / "log").glob("*/*/info.log")] == ["info.log"]
    assert pd.read_csv(run / "metrics.csv")["epoch"].tolist() == [1, 2, 3]
    info = (tmp_path / "saved" / "log").glob("*/*/info.log").__next__().read_text()
    resumed_at = re.search(r"\(torchrun restart 1\)\. Resume training from epoch 2, batch (\d+)", info)
    assert resumed_at and int(resumed_at.group(1)) > 15, info[-2000:]  # from the interval checkpoint
    assert same_weights(final_weights(tmp_path / "saved"), reference)


def test_a_resubmitted_named_run_continues_where_it_was_killed(elastic_setup, tmp_path):
    _, config = elastic_setup
    cfg_path = write_config(tmp_path, {**config, "trainer": {**config["trainer"], "save_dir": str(tmp_path / "saved")}})
    deadline = time.monotonic() + 3 * RUN_LIMIT
    straight = start(["train.py", "-c", cfg_path, "--run_id", "straight"], REPO, tmp_path / "straight.log")
    first = start(["train.py", "-c", cfg_path, "--run_id", "job"], REPO, log := tmp_path / "job.log")
    while KILL_AT not in log.read_text():
        assert time.monotonic() < deadline and first.poll() is None, log.read_text()[-2000:]
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)  # no chance to save: only the interval checkpoint is there
    again = start(["train.py", "-c", cfg_path, "--run_id", "job"], REPO, log2 := tmp_path / "job2.log")
    assert finish([straight, again], deadline) == [0, 0], log2.read_text()[-3000:]
    assert re.search(r"Resume training from epoch 2, batch (1[6-9]|[2-5]\d)\b", log2.read_text())
    runs = tmp_path / "saved" / "models" / config["name"]
    weights = {name: torch.load(runs / name / "model_latest.pth", weights_only=True) for name in ("job", "straight")}
    assert weights["job"]["epoch"] == 3
    assert same_weights(weights["job"]["state_dict"], weights["straight"]["state_dict"])
    # the same name with another experiment is refused, not mixed in
    other = {**config, "optimizer": {"type": "SGD", "args": {"lr": 0.1}},
             "trainer": {**config["trainer"], "save_dir": str(tmp_path / "saved")}}
    refused = subprocess.run([sys.executable, "train.py", "-c", write_config(tmp_path, other, "other.json"),
                              "--run_id", "job"], cwd=REPO, capture_output=True, text=True, timeout=RUN_LIMIT)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
    assert "holds a run with another config (optimizer.args.amsgrad, optimizer.args.lr" in refused.stderr
    assert "optimizer.type differ); give its own config, choose another --run_id" in refused.stderr


def project_copy(root):
    shutil.copytree(REPO, root, ignore=shutil.ignore_patterns(".git", "saved", "data", "__pycache__", ".*cache"))
    return root


def two_nodes(tmp_path, config, kill):
    """Two agents, one process each, own project copy and save_dir; optionally kill rank 1's worker."""
    port, nodes, logs = free_port(), [], []
    for node in ("a", "b"):
        root = project_copy(tmp_path / node)
        cfg = {**config, "trainer": {**config["trainer"], "save_dir": "saved/"}}
        write_config(root, cfg, "run.json")
        logs.append(tmp_path / f"{node}.log")
        nodes.append(start(torchrun("--nnodes=2", "--nproc_per_node=1", "--max-restarts=2", "--rdzv_backend=c10d",
                                    f"--rdzv_endpoint=127.0.0.1:{port}", "--rdzv_id=two_nodes", "train.py",
                                    "-c", "run.json"), root, logs[-1]))
    deadline = time.monotonic() + RUN_LIMIT
    if kill:
        kill_worker_at(nodes, logs, KILL_AT, rank=1, deadline=deadline)
    assert finish(nodes, deadline) == [0, 0], "\n".join(log.read_text()[-2000:] for log in logs)
    return final_weights(tmp_path / "a" / "saved", tmp_path / "b" / "saved")


@pytest.mark.parametrize("kill", [False, True], ids=["unkilled", "rank1-killed"])
def test_two_nodes_without_a_shared_disk_match_one_standalone_run(elastic_setup, reference, tmp_path, kill):
    _, config = elastic_setup
    assert same_weights(two_nodes(tmp_path, config, kill), reference)


def any_rank_worker(rank, port, folder):
    """Rank 1 holds the newer checkpoint: both ranks end with it."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE="2")
    from runs.start import newest_on_any_rank
    from utils import distributed as dist

    dist.init_distributed()
    try:
        # a group restarted on the same store must not find this group's joining keys there
        store = torch.distributed.distributed_c10d._get_default_store()
        while isinstance(store, torch.distributed.PrefixStore):
            store = store.underlying_store
        left = [key for key in store.list_keys() if key.startswith(dist.JOIN_PREFIX)]
        (folder / f"keys{rank}.txt").write_text(repr(left))
        checkpoint, path = newest_on_any_rank(folder / f"rank{rank}", [])
        (folder / f"got{rank}.txt").write_text(f"{checkpoint['epoch']} {checkpoint['global_step']} {path}")
    finally:
        dist.cleanup()


def test_the_rank_holding_the_newest_checkpoint_sends_it_to_all_and_join_keys_are_gone(tmp_path):
    import torch.multiprocessing as mp

    for rank, (epoch, step) in enumerate([(1, 20), (2, 41)]):  # rank 0 holds the older one: rank 1's wins
        (tmp_path / f"rank{rank}").mkdir()
        torch.save({"state_dict": {}, "config": {}, "epoch": epoch, "global_step": step},
                   tmp_path / f"rank{rank}" / "model_latest.pth")
    mp.start_processes(any_rank_worker, args=(free_port(), tmp_path), nprocs=2, join=True, start_method="fork")
    expected = f"2 41 {tmp_path / 'rank1' / 'model_latest.pth'}"
    assert [(tmp_path / f"got{r}.txt").read_text() for r in (0, 1)] == [expected, expected]
    assert (tmp_path / "keys0.txt").read_text() == "[]"
