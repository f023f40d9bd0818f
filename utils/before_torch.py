"""Imported first by train.py, test.py and tune.py, before torch: the OpenMP runtime reads OMP_WAIT_POLICY
once, when torch loads it; set later, it changes nothing. Threads that spin while they wait are quick on
free cores and ruinous beside busy processes, so the policy follows the load measured here, unless the
user set it (docs/performance.md)."""
import os
import sys

from utils import cpu_threads

cpu_threads.set_wait_policy(os.environ, torch_loaded="torch" in sys.modules)
