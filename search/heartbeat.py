"""The heartbeat of a search's trial (tune.py): this worker's beats while it trains it. Other workers judge a
trial whose beats stopped in search/recovery.fail_stale_trials (stale only when no live job holds its run)."""
import threading

from utils.errors import print_line


class Heartbeat:
    """Records that this worker is alive, every heartbeat_interval seconds while a trial trains (Optuna's
    heartbeat: a trial whose beats stop for grace_period seconds is failed and queued again by others).
    A beat lost to a database outage is tried again at the next beat (search/outage.py says so, once)."""

    def __init__(self, storage, trial):
        self.storage, self.trial_id, self.number = storage, trial._trial_id, trial.number
        self.interval = storage.get_heartbeat_interval() if hasattr(storage, "get_heartbeat_interval") else None
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True, name=f"heartbeat of trial {trial.number}")

    def __enter__(self):
        if self.interval is not None:
            self.storage.record_heartbeat(self.trial_id)
            self.thread.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        if self.thread.is_alive():
            self.thread.join()

    def _beat(self):
        warned = False
        while not self.done.wait(self.interval):
            try:
                self.storage.record_heartbeat(self.trial_id)
            except Exception as err:  # noqa: BLE001 - whatever it is, training goes on and the next beat retries
                if not warned:
                    print_line(f"warning: the heartbeat of trial {self.number} was not recorded "
                               f"({type(err).__name__}); trying again every {self.interval} s")
                warned = True
