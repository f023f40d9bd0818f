"""trainer.strategy "fsdp" across kills: a worker SIGKILLed under `--max-restarts=1`, and a whole job (agent and
workers) SIGKILLed and run again with the same `--run_id`, both after epoch 2's interval checkpoint, end bitwise
where the unkilled FSDP run ends: weights, optimizer state and every metric. And a rank that aborts at exit after
the run finished (what gloo's threads once did, docs/distributed.md) costs a restart that trains nothing.

Real torchrun agents (gloo, CPU) on the elastic tests' config (tests/helpers/elastic.py) under FSDP2. The final
state is what each rank's trainer holds at the end (tests/helpers/ddp_run.py --train), not a checkpoint file read
back, so these tests hold whatever format sharded checkpoints are saved in.
"""
import re
import time

import pandas as pd
import pytest

from tests.helpers.configs import write_config
from tests.helpers.elastic import KILL_AT, assert_ends_as, elastic_config, final_state, start_evidence_job
from tests.helpers.paths import REPO
from tests.helpers.runs import run_dirs
from tests.helpers.torchrun import RUN_LIMIT, STANDALONE, finish, kill_job_at, kill_worker_at, start, torchrun

pytestmark = pytest.mark.slow

FSDP_LIMIT = 2 * RUN_LIMIT  # an FSDP step all-gathers and reduce-scatters each unit: slower than DDP's
RESUMED_AFTER_THE_CHECKPOINT = r"Resume training from epoch 2, batch (1[6-9]|[2-5]\d)\b"  # batch 15's, not zero
# train.py's entry point as torchrun runs it; then rank 1 of the first worker group dies by SIGABRT, as a gloo
# thread ended inside a C++ destructor at interpreter exit did ("terminate called without an active exception")
ABORT_AFTER_THE_RUN = """
import os, runpy, sys
sys.path.insert(0, os.getcwd())
sys.argv = ["train.py", *sys.argv[1:]]
runpy.run_path("train.py", run_name="__main__")
if os.environ["RANK"] == "1" and os.environ["TORCHELASTIC_RESTART_COUNT"] == "0":
    os.abort()
"""


@pytest.fixture(scope="module")
def fsdp_setup(tmp_path_factory):
    return elastic_config(tmp_path_factory.mktemp("fsdp_elastic"), strategy="fsdp")


@pytest.fixture(scope="module")
def fsdp_reference(fsdp_setup):
    """What the unkilled 2-rank FSDP run ends with."""
    tmp, config = fsdp_setup
    agent, log = start_evidence_job(tmp / "reference", config, "reference.log")
    assert finish([agent], time.monotonic() + FSDP_LIMIT) == [0], log.read_text()[-3000:]
    return final_state(tmp / "reference")


def test_a_killed_fsdp_worker_is_restarted_and_ends_as_if_never_killed(fsdp_setup, fsdp_reference, tmp_path):
    _, config = fsdp_setup
    deadline = time.monotonic() + FSDP_LIMIT
    agent, log = start_evidence_job(tmp_path, config, "torchrun.log", torchrun_args=["--max-restarts=1"])
    kill_worker_at([agent], [log], KILL_AT, rank=1, deadline=deadline)
    assert finish([agent], deadline) == [0], log.read_text()[-3000:]
    assert re.search(r"\(torchrun restart 1\)\. " + RESUMED_AFTER_THE_CHECKPOINT, log.read_text()), \
        log.read_text()[-3000:]
    assert_ends_as(tmp_path, fsdp_reference)


def test_a_killed_fsdp_job_run_again_with_its_run_id_ends_as_if_never_killed(fsdp_setup, fsdp_reference, tmp_path):
    _, config = fsdp_setup
    deadline = time.monotonic() + 2 * FSDP_LIMIT
    named = ("--run_id", "job")
    agent, log = start_evidence_job(tmp_path, config, "killed.log", *named)
    kill_job_at(agent, log, KILL_AT, deadline)  # no chance to save: only the interval checkpoint is there
    again, log = start_evidence_job(tmp_path, config, "again.log", *named)
    assert finish([again], deadline) == [0], log.read_text()[-3000:]
    assert re.search(RESUMED_AFTER_THE_CHECKPOINT, log.read_text()), log.read_text()[-3000:]
    assert_ends_as(tmp_path, fsdp_reference)


def test_a_rank_aborting_at_exit_after_the_run_costs_a_restart_that_trains_nothing(fsdp_setup, tmp_path):
    _, config = fsdp_setup
    script = tmp_path / "abort_after_the_run.py"
    script.write_text(ABORT_AFTER_THE_RUN)
    cfg = write_config(tmp_path, {**config, "trainer": {**config["trainer"], "epochs": 1,
                                                        "save_dir": str(tmp_path / "saved")}})
    agent = start(torchrun(*STANDALONE, "--max-restarts=1", script, "-c", cfg), REPO, log := tmp_path / "torchrun.log")
    assert finish([agent], time.monotonic() + FSDP_LIMIT) == [0], log.read_text()[-3000:]
    text = log.read_text()
    assert "failed (exitcode: -6) local_rank: 1" in text, text[-3000:]  # it did abort, and torchrun restarted
    assert "Nothing to train: the checkpoint has trained 1 epochs and trainer.epochs is 1" in text, text[-3000:]
    assert text.count("Train Epoch: 1 [57/57") == 1
    (run,) = run_dirs(tmp_path / "saved")
    assert pd.read_csv(run / "metrics.csv")["epoch"].tolist() == [1]  # trained once, not again
