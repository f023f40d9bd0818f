"""MLflow: one MLflow run per run (its identity: run.json's run_uid), in an embedded SQLite store unless a tracking
URI is given.

args: tracking_uri (default sqlite:///<save_dir>/mlflow.db), experiment (default: config name),
tags (extra tags). Only this module imports mlflow, and only when "mlflow" is listed.
"""
import functools
import logging
import math
import os
import sqlite3
import sys
from contextlib import contextmanager
from pathlib import Path

from logger.trackers.store_lock import store_lock, store_lock_path
from utils.config.dotted import flatten
from utils.redact import redact

PARAM_CHUNK, MAX_PARAM = 100, 6000  # MLflow's limits: params per batch, characters per value
FLUSH_EVERY = 200  # buffered metric points; also flushed at every epoch end


def _quiet_retries(method):
    """A server gone mid-run: urllib3 logs each of MLflow's HTTP retries as a warning line before the request
    fails; the failure is the tracker's one warning (tracker_set.py), so those lines are left out."""
    @functools.wraps(method)
    def quiet(*args, **kwargs):
        pool = logging.getLogger("urllib3.connectionpool")
        level = pool.level
        pool.setLevel(logging.ERROR)
        try:
            return method(*args, **kwargs)
        finally:
            pool.setLevel(level)
    return quiet


class MlflowTracker:
    def __init__(self, args):
        self.args = dict(args)
        self.tags = self.args.pop("tags", {})
        unknown = set(self.args) - {"tracking_uri", "experiment"}
        if unknown:
            raise ValueError(f"unknown mlflow args {sorted(unknown)}; use tracking_uri, experiment, tags, required")
        self.client = self.run_id = self.experiment_id = None
        self.buffer = []
        self.high_water = {}  # {metric: the last step this start logged}: steps only grow within a start
        self.stored = {}  # {metric: {step: newest value}} the MLflow run held when this start opened it
        self.artifacts = []  # the run's files (config.json, metrics.csv), copied after each epoch

    def connect(self, save_root, experiment):
        # mid-run, a server outage costs a few seconds per call, not MLflow's default minutes of retries; set
        # here, when MLflow is used, not on import (MLflow reads them at each request; a user's values win)
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        from mlflow.tracking import MlflowClient
        root = Path(save_root).absolute()
        self.uri = self.args.get("tracking_uri") or f"sqlite:///{root / 'mlflow.db'}"
        name = self.args.get("experiment") or experiment
        if not self.args.get("tracking_uri"):
            root.mkdir(parents=True, exist_ok=True)  # the default store's folder
        _quiet_mlflow()
        with store_lock(self.uri), _quick_failure():  # a dead server: one warning in seconds
            _open_sqlite_store(self.uri)  # under the lock: another run may be creating the store
            self.client = MlflowClient(tracking_uri=self.uri)  # a new SQLite store gets its tables here
            found = self.client.get_experiment_by_name(name)
            self.experiment_id = found.experiment_id if found else self._create_experiment(name, root)

    def _create_experiment(self, name, root):
        from mlflow.exceptions import MlflowException
        artifacts = (root / "mlflow-artifacts").as_uri() if self.uri.startswith("sqlite:") else None
        try:
            return self.client.create_experiment(name, artifact_location=artifacts)
        except MlflowException:  # created by another run a moment ago (server stores have no file lock)
            return self.client.get_experiment_by_name(name).experiment_id

    @_quiet_retries
    def open(self, run, saved):
        """Continue the MLflow run this run already has (trackers.json, else its identity tag), or start one."""
        self.artifacts = list(run.artifacts)
        tags = {**run.tags, **self.tags}
        self.run_id = self._existing_run(saved, run.tags)
        if self.run_id is None:
            self.run_id = self.client.create_run(self.experiment_id, tags=tags, run_name=run.run_id).info.run_id
        else:
            self.client.update_run(self.run_id, status="RUNNING")
            self.stored = self._stored_points()
        self._log_params(flatten(run.config))
        if run.git_commit:  # where MLflow's UI looks for the commit
            self.client.set_tag(self.run_id, "mlflow.source.git.commit", run.git_commit)
        return {"run_id": self.run_id, "tracking_uri": redact(self.uri)}  # trackers.json: no password

    def _existing_run(self, saved, tags):
        if saved and saved.get("tracking_uri") == redact(self.uri):
            return saved["run_id"]
        # killed between creating the MLflow run and saving its id: the run's identity finds it. Not its name or
        # folder: a folder deleted and made again under the same --run_id is a new run (run.json's run_uid);
        # only a run made before run_uid existed is found by its folder
        key = "run_uid" if tags.get("run_uid") else "run_folder"
        found = self.client.search_runs([self.experiment_id], f"tags.{key} = '{tags[key]}'", max_results=1)
        return found[0].info.run_id if found else None

    def _stored_points(self):
        """{metric: {step: value}}, the newest value at each step: a resume that replays a step with the same value
        does not store it twice; one that retrains it to another value logs that value again."""
        points = {}
        for key in self.client.get_run(self.run_id).data.metrics:
            history = sorted(self.client.get_metric_history(self.run_id, key), key=lambda m: m.timestamp)
            points[key] = {m.step: m.value for m in history}
        return points

    def _log_params(self, flat):
        from mlflow.entities import Param
        stored = self.client.get_run(self.run_id).data.params  # a resumed run: values may not change
        params = [Param(k, str(v)[:MAX_PARAM]) for k, v in flat.items() if k not in stored]
        for start in range(0, len(params), PARAM_CHUNK):
            self.client.log_batch(self.run_id, params=params[start:start + PARAM_CHUNK])

    def log_scalars(self, scalars, step):
        import time

        from mlflow.entities import Metric
        now = int(time.time() * 1000)
        for key, value in scalars.items():
            if step <= self.high_water.get(key, -1):
                continue
            self.high_water[key] = step
            value = float(value)
            if not _same(self.stored.get(key, {}).get(step), value):
                self.buffer.append(Metric(key, value, now, step))
        if len(self.buffer) >= FLUSH_EVERY:
            self.flush()

    @_quiet_retries
    def flush(self):
        while self.buffer:
            batch, self.buffer = self.buffer[:1000], self.buffer[1000:]
            self.client.log_batch(self.run_id, metrics=batch)

    @_quiet_retries
    def end_epoch(self, epoch, log, best):
        """Artifacts that follow the run: its config, its metrics.csv, where its best checkpoint is."""
        self.flush()
        for path in self.artifacts:
            if Path(path).is_file():
                self.client.log_artifact(self.run_id, str(path))
        if best.get("checkpoint"):
            self.client.log_text(self.run_id, best["checkpoint"] + "\n", "best_checkpoint.txt")
            self.client.set_tag(self.run_id, "best_checkpoint", best["checkpoint"])

    @_quiet_retries
    def finish(self, status):
        try:
            self.flush()
            if status == "PRUNED":  # MLflow has no such status: a run of whole epochs, stopped by the search
                self.client.set_tag(self.run_id, "pruned", "true")
        finally:
            self.client.set_terminated(self.run_id, "FINISHED" if status == "PRUNED" else status)

    def where(self):
        """Where the run is, and the command that shows it (a server's URI is its own UI)."""
        uri = redact(self.uri)
        look = f"open {uri} in a browser" if uri.startswith(("http://", "https://")) else \
            f"mlflow ui --backend-store-uri {uri}  (needs the full mlflow package: pip install mlflow)"
        return [f"MLflow: run {self.run_id} in {uri}", f"  look: {look}"]


def _same(stored, value):
    """Whether MLflow already holds `value` (it stores +-inf as +-the largest float, NaN as NaN)."""
    if stored is None:
        return False
    if math.isnan(value):
        return math.isnan(stored)
    return stored == max(-sys.float_info.max, min(sys.float_info.max, value))


def _quiet_mlflow():
    """MLflow's own log lines (its tables created, each of ten retries of a store it cannot open, with the
    error) would come before, and repeat, the tracker's one warning: this tracker says what went wrong."""
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _open_sqlite_store(uri):
    """Open a SQLite store once, now: one that cannot be opened (a read-only or missing folder, a file that is
    not a database) fails here at once, where MLflow would retry it for about 100 s."""
    lock = store_lock_path(uri) if uri.startswith("sqlite:") else None
    if lock is None:
        return  # a server, a file store, an in-memory database: MLflow reaches them itself
    database = lock.with_name(lock.name.removesuffix(".lock"))
    database.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(database, timeout=30)
    try:
        connection.execute("SELECT count(*) FROM sqlite_master").fetchall()
    finally:
        connection.close()


@contextmanager
def _quick_failure():
    """No retries while connecting: an unreachable server is reported at once, not after minutes."""
    saved = {k: os.environ.get(k) for k in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT")}
    os.environ.update(MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", MLFLOW_HTTP_REQUEST_TIMEOUT="5")
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key)
            else:
                os.environ[key] = value
