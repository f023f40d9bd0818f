"""Stop cleanly on SIGINT / SIGTERM: finish the batch, checkpoint, exit 130 / 143."""
import signal


class TrainingInterrupted(Exception):
    """Raised by the trainer after it saved its state because a signal asked it to stop."""

    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.exit_code = 128 + signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM


class StopSignals:
    """Records SIGINT / SIGTERM instead of dying; a second SIGINT aborts at once."""

    def __init__(self):
        self.signum = None
        self._previous = {}

    @property
    def requested(self):
        return self.signum is not None

    def install(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def restore(self):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def _handle(self, signum, frame):
        if signum == signal.SIGINT and self.signum == signal.SIGINT:
            self.restore()
            raise KeyboardInterrupt  # second Ctrl-C: the user does not want to wait
        self.signum = signum
