"""The search engine behind tune.py: the space a config's `tune` section describes, the sampler and pruner, the
study's storage, the loop that asks, trains and tells each trial, reviving the trials of workers that died, and the
report. Users never need to open it."""
