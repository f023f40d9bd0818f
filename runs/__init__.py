"""The run engine: one run folder's files, lock, commits and checkpoints, and which run a start continues.

Users never need to open this package. Nothing here imports torch at package import, so that compare.py
(runs.table) reads run folders fast.
"""
