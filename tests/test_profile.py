"""trainer.profile: a Chrome trace of the window's batches in the run's log folder, the top operators in
info.log, a checked config value, and nothing at all when it is off."""
import json

import pytest

import train
import trainer.profiling as profiling
from tests.helpers.cli import train_in_process
from tests.helpers.configs import shrink_config, write_config
from utils.config.trainer_options import read_trainer_options
from utils.errors import UserError

WINDOW = {"wait": 1, "warmup": 1, "active": 3}


def profiled_run(tmp_path, data_dir, profile, batches):
    config = shrink_config(tmp_path, data_dir, epochs=1, len_epoch=batches, verbosity=1, profile=profile)
    return train_in_process("-c", write_config(tmp_path, config))


def profiler_steps(trace_path):
    events = json.loads(trace_path.read_text())["traceEvents"]
    return [e for e in events if e.get("ph") == "X" and e.get("name", "").startswith("ProfilerStep#")]


def test_the_trace_holds_the_active_batches_and_info_log_the_top_operators(tmp_path, synthetic_data_dir, one_thread):
    run = profiled_run(tmp_path, synthetic_data_dir, WINDOW, batches=8)
    traces = sorted(run.log_dir.glob("profile_trace-*.json"))
    # batch 1 waits, batch 2 warms up, batches 3 to 5 are recorded
    assert [t.name for t in traces] == ["profile_trace-batch3.json"]
    assert len(profiler_steps(traces[0])) == WINDOW["active"]
    log = (run.log_dir / "info.log").read_text()
    table = log.split("Profile of the recorded batches, top 15 operators by self_cpu_time_total:", 1)[1]
    assert "aten::convolution_backward" in table.split("Self CPU time total")[0]
    assert f"Profiler trace: {traces[0]}" in log
    assert not list(run.save_dir.glob("*.json*trace*"))  # the trace is a log, not a checkpoint file


def test_a_run_shorter_than_the_window_keeps_what_it_recorded_and_says_so(tmp_path, synthetic_data_dir, one_thread):
    run = profiled_run(tmp_path, synthetic_data_dir, WINDOW, batches=4)  # ends after 2 of the 3 active batches
    # batches 3 and 4, then the step still open when training ended (validation, saving)
    assert len(profiler_steps(run.log_dir / "profile_trace-batch3.json")) == 3
    assert "training ended 1 batches before the end of the trainer.profile window; profile_trace-batch3.json " \
           "holds the 2 recorded" in (run.log_dir / "info.log").read_text()


def test_a_run_that_ends_before_the_active_batches_says_there_is_no_trace(tmp_path, synthetic_data_dir, one_thread):
    run = profiled_run(tmp_path, synthetic_data_dir, WINDOW, batches=2)
    assert not list(run.log_dir.glob("profile_trace-*"))
    assert "none was recorded, so there is no trace: lower wait and warmup" in (run.log_dir / "info.log").read_text()


def refuse_profiler(*args, **kwargs):
    raise AssertionError("a profiler was built where none should be")


def test_profile_off_never_builds_a_profiler(tmp_path, synthetic_data_dir, monkeypatch, one_thread):
    monkeypatch.setattr(profiling.ProfileWindow, "__init__", refuse_profiler)
    run = profiled_run(tmp_path, synthetic_data_dir, False, batches=3)
    assert not list(run.log_dir.glob("profile_trace-*"))


def test_only_rank_0_profiles(tmp_path, synthetic_data_dir, monkeypatch, one_thread):
    monkeypatch.setattr(profiling.ProfileWindow, "__init__", refuse_profiler)
    config = shrink_config(tmp_path, synthetic_data_dir, epochs=1, len_epoch=3, verbosity=1, profile=True)
    trainer = train.build_trainer(train.parse_args(["-c", str(write_config(tmp_path, config))]))
    trainer.is_main = False  # what BaseTrainer sets on ranks 1, 2, ... under torchrun
    trainer.train()
    assert not list(trainer.config.log_dir.glob("profile_trace-*"))


def test_true_is_the_default_window_and_a_partial_window_fills_in_the_rest():
    assert profiling.profile_window(True) == {"wait": 5, "warmup": 2, "active": 5}
    assert profiling.profile_window({"active": 2}) == {"wait": 5, "warmup": 2, "active": 2}
    assert profiling.profile_window(False) is None


@pytest.mark.parametrize("value", ["yes", 1, {"activ": 3}, {"active": 0}, {"wait": -1}, {"wait": 1.5}, [1, 1, 1]])
def test_a_bad_profile_value_is_one_line_naming_the_key(value):
    with pytest.raises(UserError, match=r"^config: trainer\.profile must be true, false or \{\"wait\": W, "):
        read_trainer_options({"epochs": 1, "profile": value})
