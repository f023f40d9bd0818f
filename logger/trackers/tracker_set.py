"""TrackerSet: the experiment trackers of one run (rank 0 only), each behind a safety net.

The set connects each listed tracker and opens its run; from then on each is a peer of the
run's metrics sink (logger/metrics_sink.py) through a TrackerPeer. A tracker may be down,
slow or broken; training must not notice. Every call into a tracker goes through `_guard`:
the first failure is one warning and the tracker is dropped for the rest of the run (or, at
start and when the user asked for `required`, a UserError: one line, exit 2). The run's own
files keep everything regardless.
"""
import importlib
import logging

from logger.trackers.run_info import run_status
from utils.errors import UserError
from utils.redact import redact
from utils.tracker_specs import KNOWN, parse_trackers


class TrackerSet:
    def __init__(self, value, logger=None):
        """`value`: trainer.trackers as the config gives it; nothing is imported yet."""
        self.specs = parse_trackers(value)
        self.logger = logger or logging.getLogger("trackers")
        self.active = []  # TrackerPeers still working: the metrics sink's tracker peers
        self.ids = {}
        self.where = []  # after finish: lines saying where each tracker's data is and how to look at it

    def wants(self, name):
        return any(spec.name == name for spec in self.specs)

    def __bool__(self):
        return any(KNOWN[spec.name] for spec in self.specs)

    def connect(self, save_root, experiment):
        """Import each listed tracker and reach its store or server (before the run folder exists)."""
        for spec in self.specs:
            if KNOWN[spec.name] is None:
                continue
            tracker = self._guard(spec, "cannot be started", True, _build, spec)
            if tracker is not None and self._guard(spec, "cannot be reached", True, _connect, tracker,
                                                   save_root, experiment):
                self.active.append(TrackerPeer(self, spec, tracker))

    def open_run(self, run):
        """Start this run's tracker runs, or continue the ones an earlier start of the run opened."""
        saved = run.saved_ids()
        for peer in list(self.active):
            name = peer.spec.name
            found = self._guard(peer.spec, "cannot open a run", True, peer.tracker.open, run, saved.get(name))
            if found is not None:
                self.ids[name] = found
        if self.ids and self.ids != {k: saved.get(k) for k in self.ids}:
            run.save_ids({**saved, **self.ids})

    def finish(self, error=None):
        """End every tracker run with the status the run ended with (exception on its way out, or None)."""
        for peer in list(self.active):
            peer.close(error)

    def _guard(self, spec, what, at_start, call, *args):
        """call(*args), or None after one warning (a UserError at start when the tracker is required)."""
        try:
            return call(*args)
        except Exception as err:  # noqa: BLE001  any failure of a tracker, never of training
            reason = redact(f"{type(err).__name__}: {' '.join(str(err).split())}")[:300]  # one line, no password
            self.active = [peer for peer in self.active if peer.spec is not spec]
            if at_start and spec.required:
                raise UserError(f"tracker {spec.name} {what} ({reason}); it is required "
                                f"(trainer.trackers: {spec.name}.args.required): fix it or drop 'required'") from None
            self.logger.warning(f"Warning: tracker {spec.name} {what} ({reason}); training goes on without it, "
                                "the run folder keeps every metric")
            return None


class TrackerPeer:
    """One tracker as a peer of the metrics sink: log / flush / end_epoch / close, each call guarded by its set."""

    def __init__(self, owner, spec, tracker):
        self.owner, self.spec, self.tracker = owner, spec, tracker

    def log(self, scalars, step):
        self._call("log_scalars", scalars, step)

    def flush(self):
        self._call("flush")

    def end_epoch(self, epoch, log, best):
        self._call("end_epoch", epoch, log, best)

    def close(self, error=None):
        """End the tracker's run with the status the run ended with, then note where that run is."""
        self._call("finish", run_status(error))
        if self in self.owner.active:
            self.owner.where += self._call("where") or []
            self.owner.active.remove(self)

    def _call(self, method, *args):
        # a tracker without the method fails like any other call: one warning, not a crash of training
        return self.owner._guard(self.spec, "failed", False, lambda: getattr(self.tracker, method)(*args))


def _build(spec):
    """The tracker's class, imported now that the config lists it."""
    module, cls = KNOWN[spec.name].split(":")
    return getattr(importlib.import_module(module), cls)(spec.args)


def _connect(tracker, save_root, experiment):
    tracker.connect(save_root, experiment)
    return True
