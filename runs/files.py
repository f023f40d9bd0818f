"""The names of a run folder's files, spelled once; no torch here, so that compare.py can read runs fast."""
LATEST, BEST = "model_latest.pth", "model_best.pth"
HISTORY = "metrics.csv"  # one row per finished epoch
RUN_CONFIG = "config.json"  # the run's config as it trains
ORIGIN_FILE = "run.json"  # {"origin": the checkpoint a run started from, or null}
