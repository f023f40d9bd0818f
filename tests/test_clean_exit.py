"""A finished torchrun job exits 0 on every rank: the process group's gloo threads end before Python does.

A gloo worker thread still running when the interpreter shuts down frees the last collective's tensors there;
that takes the GIL, which ends the thread inside a C++ destructor: "terminate called without an active
exception", the rank dies with SIGABRT and torchrun reports the finished job FAILED (issue 24, item 2).
"""
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.helpers.configs import shrink_config, write_config
from tests.helpers.network import free_port
from tests.helpers.paths import REPO
from tests.helpers.torchrun import EXIT_RUN, STANDALONE, torchrun
from tests.synthetic_mnist import write_synthetic_mnist

LAUNCHES = 30
AT_ONCE = 3  # launches running together: each is two ranks and an agent, mostly starting up
RUN_LIMIT = 240  # seconds for one launch; a launch past it has hung
STRATEGIES = ("ddp", "fsdp")  # FSDP's device mesh holds the group too (docs/distributed.md)


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory):
    """Two batches per rank, one epoch: the test is about the exit, not the training."""
    tmp = tmp_path_factory.mktemp("clean_exit")
    data = write_synthetic_mnist(tmp / "data", n_train=200, n_test=20)
    return tmp, shrink_config(tmp, data, epochs=1, verbosity=1)


def run(launcher, save_dir, tmp, *options, env=None, strategy="ddp"):
    config = tiny_config_at(tmp, save_dir, strategy)
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run([sys.executable, *launcher, str(EXIT_RUN), *options, "-c", str(config)], cwd=REPO,
                          env=full_env, capture_output=True, text=True, timeout=RUN_LIMIT)


def tiny_config_at(tmp, save_dir, strategy):
    tmp_dir, config = tmp
    config = {**config, "trainer": {**config["trainer"], "save_dir": str(save_dir), "strategy": strategy}}
    return write_config(save_dir.parent, config, f"{save_dir.name}.json")


def gloo_threads_after_exit(output):
    """The gloo threads each rank still had after its entry point returned (one list per rank)."""
    lines = [line for line in output.splitlines() if line.startswith("threads after exit:")]
    return [[name for name in line.split(":", 1)[1].split() if "gloo" in name] for line in lines]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_the_entry_point_ends_the_process_groups_threads(tiny_config, tmp_path, strategy):
    """Rank 0 of 1, no torchrun: after train.py's entry point no gloo thread is left for interpreter exit. Under
    FSDP a rank of 1 shards too, so its device mesh (which DTensor's caches keep) must let the group go."""
    env = {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(free_port())}
    result = run([], tmp_path / "saved", tiny_config, "--list-threads", env=env, strategy=strategy)
    assert result.returncode == 0, result.stderr[-3000:]
    assert gloo_threads_after_exit(result.stdout) == [[]], result.stdout[-2000:]


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ddp"])  # FSDP's threads are checked by the quick test above (fsdp: 0 aborts
# in 30 launches before and after its fix, 6 min under load: too rare to count here, docs/distributed.md)
def test_thirty_torchrun_launches_exit_0_on_every_rank(tiny_config, tmp_path, strategy):
    """Each launch leaves a collective in flight as training returns (tests/helpers/exit_run.py), which made some
    launches abort before the fix (docs/distributed.md); a clean teardown survives it on all 60 ranks."""
    def launch(number):
        return run(torchrun(*STANDALONE), tmp_path / f"saved{number}", tiny_config, strategy=strategy)

    started = time.monotonic()
    with ThreadPoolExecutor(AT_ONCE) as pool:
        results = list(pool.map(launch, range(LAUNCHES)))
    failed = [(number, r.returncode, (r.stdout + r.stderr)[-1500:]) for number, r in enumerate(results)
              if r.returncode != 0 or "terminate called" in r.stderr or "exitcode" in r.stderr]
    assert not failed, f"{len(failed)} of {LAUNCHES} launches failed; first: {failed[0]}"
    print(f"{strategy}: {LAUNCHES} launches, {AT_ONCE} at a time: {time.monotonic() - started:.0f} s")
