"""trainer.profile: a short torch.profiler window over training batches, written as a Chrome trace into the run's
log folder, with the top operators in info.log (docs/debugging.md)."""
from torch.profiler import ProfilerActivity, profile, schedule

# skip the first batches (start-up, allocator warm-up), settle the profiler, then record a few
DEFAULT_WINDOW = {"wait": 5, "warmup": 2, "active": 5}
TOP_OPERATORS = 15  # rows of the summary table in info.log


def profile_window(option):
    """{"wait", "warmup", "active"} for a trainer.profile value (checked by utils/config/rules.py); None: off."""
    if option is True:
        return dict(DEFAULT_WINDOW)
    if not option:
        return None
    return {**DEFAULT_WINDOW, **option}


class ProfileWindow:
    """A started profiler over the next wait + warmup + active batches; `step()` after each batch returns the
    window, or None once its trace is written, so the training loop pays one None check when profiling is off."""

    def __init__(self, window, log_dir, first_batch, device_type, logger):
        self.logger = logger
        self.active = window["active"]
        self.keep_trace = True
        self.steps_left = window["wait"] + window["warmup"] + window["active"]
        first = first_batch + window["wait"] + window["warmup"]  # 1-based number of the first recorded batch
        self.trace_path = log_dir / f"profile_trace-batch{first}.json"
        self.sort_key = "self_device_time_total" if device_type == "cuda" else "self_cpu_time_total"
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device_type == "cuda" else [])
        self.profiler = profile(activities=activities, schedule=schedule(**window, repeat=1),
                                on_trace_ready=self._write)
        self.profiler.start()

    @classmethod
    def start(cls, option, log_dir, first_batch, device_type, logger):
        """A started window for `option` (trainer.profile), or None when profiling is off."""
        window = profile_window(option)
        return None if window is None else cls(window, log_dir, first_batch, device_type, logger)

    def step(self):
        self.profiler.step()
        self.steps_left -= 1
        if self.steps_left > 0:
            return self
        self.profiler.stop()  # the schedule wrote the trace at the last active batch
        return None

    def close(self):
        """Training ended inside the window: stop, keeping the batches recorded so far (if any)."""
        recorded = max(0, self.active - self.steps_left)
        kept = f"{self.trace_path.name} holds the {recorded} recorded" if recorded else \
            "none was recorded, so there is no trace: lower wait and warmup, or train longer"
        self.logger.warning(f"Warning: training ended {self.steps_left} batches before the end of the "
                            f"trainer.profile window; {kept}")
        self.keep_trace = recorded > 0  # a trace of no training batch would only hold the run's end
        self.profiler.stop()

    def _write(self, prof):
        if not self.keep_trace:
            return
        prof.export_chrome_trace(str(self.trace_path))
        table = prof.key_averages().table(sort_by=self.sort_key, row_limit=TOP_OPERATORS)
        self.logger.info(f"Profile of the recorded batches, top {TOP_OPERATORS} operators by "
                         f"{self.sort_key}:\n{table}")
        self.logger.info(f"Profiler trace: {self.trace_path} (open it in https://ui.perfetto.dev or "
                         "chrome://tracing)")

