"""Threads and OpenMP wait policy from the cores this process may use and what others keep busy
(utils/cpu_threads.py): the choice from given inputs, the readers of the cgroup quota and /proc/stat,
and the entry scripts that apply it and write it into info.log."""
import ast
import os
import socket
import subprocess
import sys

import optuna
import pytest
import torch

from tests.helpers.cli import train_in_process
from tests.helpers.configs import shrink_config, write_config
from tests.helpers.paths import REPO
from utils import cpu_threads as cpu
from utils.config.check import check_value
from utils.cpu_threads import DEFAULT, PASSIVE, Load, choose
from utils.errors import UserError


@pytest.mark.parametrize("load, processes, threads, policy", [
    (Load(2, 0.1), 1, 2, DEFAULT),  # an idle 2-core machine: both cores, spinning as today
    (Load(2, 2.0), 1, 1, PASSIVE),  # beside two busy processes: one thread that sleeps when it waits
    (Load(2, 1.0), 1, 1, PASSIVE),
    (Load(2, 0.6), 1, 1, PASSIVE),  # most of a core taken counts as taken
    (Load(16, 2.0), 1, 14, PASSIVE),  # the free cores, and no spinning on cores others use
    (Load(16, 0.0), 2, 8, DEFAULT),  # torchrun: 2 ranks on this node share the cores
    (Load(16, 0.0), 6, 2, DEFAULT),
    (Load(2, 0.0), 4, 1, DEFAULT),  # more processes than cores: at least one thread each
])
def test_threads_and_wait_policy_follow_usable_and_free_cores(load, processes, threads, policy):
    choice = choose(load, processes, env={})
    assert (choice.threads, choice.wait_policy) == (threads, policy)
    assert f"{load.usable} usable cores, {load.busy:.1f} busy" in choice.reason


def test_what_the_user_set_is_kept():
    busy = Load(2, 2.0)
    assert choose(busy, configured=3, env={"OMP_NUM_THREADS": "2"})[:2] == (3, PASSIVE)  # the config first
    assert choose(busy, env={"OMP_NUM_THREADS": "2", "OMP_WAIT_POLICY": "active"})[:2] == (2, "active")
    assert choose(Load(2, 0.0), env={"OMP_NUM_THREADS": "4,2"})[:2] == (4, PASSIVE)  # more threads than cores
    assert choose(busy, configured=3, env={}).reason.startswith("trainer.cpu_threads; ")
    assert choose(busy, env={"OMP_NUM_THREADS": "2"}).reason.startswith("OMP_NUM_THREADS; ")
    for ignored in ("", " ", "abc", "0"):  # OpenMP ignores these too
        assert choose(busy, env={"OMP_NUM_THREADS": ignored}).threads == 1


def test_deterministic_runs_take_the_cores_not_the_load():
    """The thread count changes the order of sums: a resumed run must get the same count whatever the load."""
    assert choose(Load(2, 2.0), deterministic=True, env={})[:2] == (2, PASSIVE)
    assert choose(Load(2, 0.0), deterministic=True, env={})[:2] == (2, DEFAULT)


def test_the_wait_policy_is_set_before_torch_only_where_the_user_did_not():
    env = {}
    assert cpu.set_wait_policy(env, measure=lambda: Load(2, 2.0)) == PASSIVE and env == {"OMP_WAIT_POLICY": PASSIVE}
    env = {}
    assert cpu.set_wait_policy(env, measure=lambda: Load(2, 0.0)) == DEFAULT and env == {}
    env = {"OMP_WAIT_POLICY": "ACTIVE"}
    assert cpu.set_wait_policy(env, measure=lambda: Load(2, 2.0)) == "ACTIVE" and env == {"OMP_WAIT_POLICY": "ACTIVE"}
    env = {}
    assert cpu.set_wait_policy(env, measure=lambda: Load(2, 2.0), torch_loaded=True) == DEFAULT and env == {}
    env = {"LOCAL_WORLD_SIZE": "2"}  # each rank's share (1 core) is free: spinning is fine
    assert cpu.set_wait_policy(env, measure=lambda: Load(2, 0.0)) == DEFAULT and "OMP_WAIT_POLICY" not in env


@pytest.mark.parametrize("files, cores", [
    ({"cpu.max": "150000 100000\n"}, 1.5),  # cgroup v2
    ({"cpu.max": "max 100000\n"}, None),
    ({"cpu/cpu.cfs_quota_us": "200000", "cpu/cpu.cfs_period_us": "100000"}, 2.0),  # cgroup v1
    ({"cpu,cpuacct/cpu.cfs_quota_us": "50000", "cpu,cpuacct/cpu.cfs_period_us": "100000"}, 0.5),
    ({"cpu/cpu.cfs_quota_us": "-1", "cpu/cpu.cfs_period_us": "100000"}, None),
    ({}, None),
])
def test_the_cgroup_quota_in_cores(tmp_path, files, cores):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert cpu.cgroup_cpu_limit(tmp_path) == cores


def test_usable_cores_are_the_affinity_capped_by_the_quota():
    cases = [(8, 1.5), (2, None), (4, 0.5), (2, 6.0)]  # (affinity, quota)
    assert [cpu.usable_cores(*case) for case in cases] == [1, 2, 1, 2]
    assert cpu.processes_here(3, env={"LOCAL_WORLD_SIZE": "2"}) == 6
    assert cpu.processes_here(env={}) == 1


STAT_BEFORE = """cpu  300 0 100 900 0 0 0 0 0 0
cpu0 100 0 0 400 0 0 0 0 0 0
cpu1 200 0 100 500 0 0 0 0 0 0
intr 1 2 3"""
# over 100 ticks: cpu0 all busy (user 80, system 20), cpu1 idle 90 and iowait 10
STAT_AFTER = """cpu  380 0 120 990 10 0 0 0 0 0
cpu0 180 0 20 400 0 0 0 0 0 0
cpu1 200 0 100 590 10 0 0 0 0 0
intr 1 2 3"""


def test_busy_cores_from_two_proc_stat_samples():
    before, after = cpu.cpu_ticks(STAT_BEFORE, {0, 1}), cpu.cpu_ticks(STAT_AFTER, {0, 1})
    assert before == {0: (100, 500), 1: (300, 800)}
    assert cpu.busy_cores(before, after) == pytest.approx(1.0)
    assert cpu.busy_cores(before, after, own_cpu_seconds=0.25, wall_seconds=0.5) == pytest.approx(0.5)  # ours is not
    only_cpu1 = cpu.cpu_ticks(STAT_BEFORE, {1}), cpu.cpu_ticks(STAT_AFTER, {1})
    assert cpu.busy_cores(*only_cpu1) == 0.0  # only the cores this process may use count


def test_the_choice_sets_torchs_threads():
    threads = torch.get_num_threads()
    try:
        line = cpu.use_cpu_threads(configured=3)
        assert torch.get_num_threads() == 3
        assert line.startswith("CPU threads: 3, OpenMP wait policy ")
    finally:
        torch.set_num_threads(threads)


def _env_without_omp():
    return {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}


@pytest.mark.slow  # the probe shares its one core with a spinning process
def test_beside_a_busy_process_the_wait_policy_is_passive_before_torch_loads():
    """Pinned to one core with a spinning process: the import of utils/before_torch.py sets PASSIVE, and
    the OpenMP runtime torch loads afterwards reads it."""
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"],
                               preexec_fn=lambda: os.sched_setaffinity(0, {0}))
    try:
        probe = ("import os, utils.before_torch, torch; "
                 "print(os.environ.get('OMP_WAIT_POLICY'), torch.get_num_threads())")
        done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, env=_env_without_omp(), capture_output=True,
                              text=True, timeout=120, preexec_fn=lambda: os.sched_setaffinity(0, {0}))
    finally:
        spinner.kill()
        spinner.wait()
    assert done.stdout.split() == ["PASSIVE", "1"], done.stderr


def test_train_writes_the_choice_into_info_log(tmp_path, synthetic_data_dir):
    threads = torch.get_num_threads()
    try:
        config = shrink_config(tmp_path, synthetic_data_dir, epochs=1, len_epoch=2, cpu_threads=2)
        train_in_process("-c", write_config(tmp_path, config))
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
    (info_log,) = (tmp_path / "saved" / "log").glob("*/*/info.log")
    (line,) = [line for line in info_log.read_text().splitlines() if "CPU threads:" in line]
    assert "CPU threads: 2, OpenMP wait policy " in line and "(trainer.cpu_threads; " in line


@pytest.mark.parametrize("script", ["train.py", "test.py", "tune.py"])
def test_entry_scripts_import_before_torch_first(script):
    """Its first statement after the docstring, or torch (imported by anything after it) loads OpenMP first."""
    tree = ast.parse((REPO / script).read_text())
    first = tree.body[1]
    assert isinstance(first, ast.Import) and first.names[0].name == "utils.before_torch"


def test_a_search_counts_its_running_trials_on_this_machine():
    import tune

    study = optuna.create_study()
    trials = [study.ask() for _ in range(4)]
    hosts = [socket.gethostname(), "elsewhere", socket.gethostname(), None]
    for trial, host in zip(trials, hosts, strict=True):
        if host is not None:
            trial.set_user_attr("worker", {"host": host, "pid": 1})
    assert tune.workers_here(study) == 2
    study.tell(trials[0], 1.0)  # finished: no longer a worker's
    assert tune.workers_here(study) == 1


@pytest.mark.parametrize("value", [0, -1, 1.5, "2", True])
def test_a_bad_cpu_threads_value_is_one_clear_line(value):
    with pytest.raises(UserError, match=r"trainer.cpu_threads must be a positive integer, or null to pick from "):
        check_value("trainer.cpu_threads", value)


def test_a_resume_takes_the_thread_count_the_run_was_trained_with(monkeypatch):
    """Another count sums in another order: the resumed weights would drift from the unkilled run's."""
    import torch

    from utils.cpu_threads import RunThreads

    threads = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    try:
        torch.set_num_threads(1)
        saved = RunThreads().state_dict()
        torch.set_num_threads(2)  # the load was lower when the run was requeued
        part = RunThreads()
        part.load_state_dict(saved)
        assert torch.get_num_threads() == 1 and "CPU threads: 1, as the run was trained" in part.note
        torch.set_num_threads(2)
        RunThreads(configured=2).load_state_dict(saved)  # the user's trainer.cpu_threads wins
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
        RunThreads().load_state_dict(saved)  # and so does OMP_NUM_THREADS
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)


def test_the_thread_count_is_in_the_checkpoint_and_restored(tmp_path, small_config, monkeypatch):
    import torch

    from tests.helpers.cli import train_in_process

    threads = torch.get_num_threads()
    try:
        config = train_in_process("-c", small_config, "-o", "trainer.epochs=1", "-o", "trainer.len_epoch=2")
        latest = config.save_dir / "model_latest.pth"
        assert torch.load(latest, weights_only=True)["cpu_threads"] == {"threads": 1}
        monkeypatch.delenv("OMP_NUM_THREADS")
        import train

        resumed = train.parse_args(["-r", str(latest), "-o", "trainer.epochs=2"])
        trainer = train.build_trainer(resumed)
        torch.set_num_threads(2)  # whatever the load gave this start
        trainer._restore(torch.load(latest, weights_only=True))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
