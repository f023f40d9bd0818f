"""Imported first by train.py, test.py and tune.py, before torch: the OpenMP runtime reads OMP_WAIT_POLICY
once, when torch loads it; set later, it changes nothing. Threads that spin while they wait are quick on
free cores and ruinous beside busy processes, so the policy follows the load measured here, unless the
user set it (docs/performance.md)."""
import os
import sys

from utils import cpu_threads

if "torch" not in sys.modules and not cpu_threads.env_value(os.environ, "OMP_WAIT_POLICY"):
    _choice = cpu_threads.choose(cpu_threads.startup_load(), cpu_threads.processes_here())
    if _choice.wait_policy == cpu_threads.PASSIVE:
        os.environ["OMP_WAIT_POLICY"] = cpu_threads.PASSIVE
