"""How many intra-op threads, and which OpenMP wait policy, for this process: from the cores it may use
(affinity, cgroup quota, its peers on this machine) and how many of them other processes keep busy.

Why: beside busy processes, a pool of threads that spin while they wait for each other (OpenMP's default)
takes cores the others need and then waits for them; one thread that sleeps when it waits does not.
No torch import here: utils/before_torch.py uses this before torch loads OpenMP.
"""
import os
import time
from collections import namedtuple
from pathlib import Path

PASSIVE, DEFAULT = "PASSIVE", "default"
Load = namedtuple("Load", "usable busy")  # cores this process may use; cores other processes kept busy
Choice = namedtuple("Choice", "threads wait_policy reason")
SAMPLE_SECONDS = 0.1  # long enough for 10 clock ticks per core, short beside a start of ~3 s


# ---- what the process may use ---------------------------------------------------------------
def affinity_cores():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def cgroup_cpu_limit(root="/sys/fs/cgroup"):
    """Cores the cgroup's CPU quota allows (may be fractional), or None without a quota (v2, then v1)."""
    root = Path(root)
    v2 = _read(root / "cpu.max")
    if v2:
        quota, period = (v2.split() + ["100000"])[:2]
        return None if quota == "max" else int(quota) / int(period)
    for folder in ("cpu", "cpu,cpuacct"):
        quota, period = _read(root / folder / "cpu.cfs_quota_us"), _read(root / folder / "cpu.cfs_period_us")
        if quota and period and int(quota) > 0:
            return int(quota) / int(period)
    return None


def usable_cores(affinity, quota):
    """Whole cores: the affinity set, capped by the quota (a quota of 1.5 cores runs 1 thread well, not 2)."""
    return max(1, min(affinity, int(quota)) if quota is not None else affinity)


def processes_here(search_workers=1, env=os.environ):
    """Processes of this job sharing the machine's cores: torchrun's ranks on this node times the search's
    workers here."""
    return int(env.get("LOCAL_WORLD_SIZE") or 1) * max(1, search_workers)


# ---- what others keep busy ---------------------------------------------------------------------
def cpu_ticks(stat_text, cpus):
    """{cpu: (busy ticks, all ticks)} from /proc/stat's per-core lines, for the cores in `cpus`."""
    ticks = {}
    for line in stat_text.splitlines():
        name, *fields = line.split()
        if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
            values = [int(v) for v in fields[:8]]  # user nice system idle iowait irq softirq steal
            ticks[int(name[3:])] = (sum(values) - values[3] - values[4], sum(values))
    return ticks


def busy_cores(before, after, own_cpu_seconds=0.0, wall_seconds=1.0):
    """Cores other processes kept busy between two cpu_ticks samples (this process's own use taken out)."""
    busy = 0.0
    for cpu, (busy_after, all_after) in after.items():
        busy_before, all_before = before.get(cpu, (busy_after, all_after))
        if all_after > all_before:
            busy += (busy_after - busy_before) / (all_after - all_before)
    return max(0.0, busy - own_cpu_seconds / wall_seconds)


def measure_load(seconds=SAMPLE_SECONDS, stat_path="/proc/stat"):
    """Sample the cores this process may use for `seconds`; a Load. Without /proc/stat: nothing busy."""
    cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))
    usable = usable_cores(affinity_cores(), cgroup_cpu_limit())
    first, own, start = _read(stat_path), sum(os.times()[:2]), time.monotonic()
    if first is None:
        return Load(usable, 0.0)
    time.sleep(seconds)
    own, wall = sum(os.times()[:2]) - own, time.monotonic() - start
    return Load(usable, busy_cores(cpu_ticks(first, cpus), cpu_ticks(_read(stat_path) or "", cpus), own, wall))


_startup = []  # the load measured once per process (utils/before_torch.py does it first)


def startup_load():
    if not _startup:
        _startup.append(measure_load())
    return _startup[0]


# ---- the choice ---------------------------------------------------------------------------------
def choose(load, processes=1, configured=None, env=os.environ, deterministic=False):
    """Threads and wait policy for one process; a value the user set (config, OMP_NUM_THREADS,
    OMP_WAIT_POLICY) is kept as it is. `deterministic`: threads from the cores alone, not from the load
    (the thread count changes the order of sums, so the same run must get the same count)."""
    share = max(1, load.usable // processes)
    free = max(0, round(load.usable - load.busy))
    why = f"{load.usable} usable cores, {load.busy:.1f} busy with other processes"
    why += f", {processes} processes of this job here" if processes > 1 else ""
    if configured is not None:
        threads, why = configured, f"trainer.cpu_threads; {why}"
    elif env_threads(env):
        threads, why = env_threads(env), f"OMP_NUM_THREADS; {why}"
    else:
        threads = share if deterministic else max(1, min(share, free))
        why += ", trainer.deterministic: from the cores alone" if deterministic else ""
    # spin only where this process's cores are all free: a config value read later may still ask for them
    policy = env_value(env, "OMP_WAIT_POLICY") or (PASSIVE if free < max(share, threads) else DEFAULT)
    return Choice(threads, policy, why)


def set_wait_policy(env, measure=startup_load, torch_loaded=False):
    """Before torch loads OpenMP: OMP_WAIT_POLICY=PASSIVE in `env` where the load calls for it; return the
    policy OpenMP will use. The user's value, or torch already loaded, leaves `env` as it is."""
    if torch_loaded or env_value(env, "OMP_WAIT_POLICY"):
        return env_value(env, "OMP_WAIT_POLICY") or DEFAULT
    choice = choose(measure(), processes_here(env=env), env=env)
    if choice.wait_policy == PASSIVE:
        env["OMP_WAIT_POLICY"] = PASSIVE
    return choice.wait_policy


def env_threads(env):
    """OMP_NUM_THREADS as the OpenMP runtime reads it (its first level); None where it ignores the value."""
    first = (env_value(env, "OMP_NUM_THREADS") or "").split(",")[0].strip()
    return int(first) if first.isdigit() and int(first) > 0 else None


def env_value(env, name):
    """A variable the user set; empty counts as unset."""
    return (env.get(name) or "").strip() or None


def _read(path):
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def use_cpu_threads(configured=None, deterministic=False, search_workers=1, fresh=False):
    """Set torch's intra-op threads; return the choice as one line for the log. `fresh`: measure the load
    again (a search, between trials), else use the start's. The wait policy is the one OpenMP started with."""
    import torch

    load = measure_load() if fresh else startup_load()
    choice = choose(load, processes_here(search_workers), configured, deterministic=deterministic)
    torch.set_num_threads(choice.threads)
    policy = env_value(os.environ, "OMP_WAIT_POLICY") or "default (spins a while)"
    return (f"CPU threads: {choice.threads}, OpenMP wait policy {policy} ({choice.reason}; "
            "set trainer.cpu_threads or OMP_NUM_THREADS, OMP_WAIT_POLICY to choose)")


class RunThreads:
    """The run's intra-op thread count as a checkpoint part: a resume takes the count the run was trained with,
    whatever the load is now, because another count sums in another order and the resumed weights would
    drift from the unkilled run's. A count the user set (trainer.cpu_threads, OMP_NUM_THREADS) wins."""

    def __init__(self, configured=None, env=os.environ):
        self.user_set = configured is not None or env_threads(env) is not None
        self.note = None  # one line for info.log when the resume changed the count

    def state_dict(self):
        import torch

        return {"threads": torch.get_num_threads()}

    def load_state_dict(self, state):
        import torch

        saved, now = int(state["threads"]), torch.get_num_threads()
        if self.user_set or saved == now:
            return
        torch.set_num_threads(saved)
        self.note = (f"CPU threads: {saved}, as the run was trained (not {now}): the same count sums in the same "
                     "order; set trainer.cpu_threads to choose")
