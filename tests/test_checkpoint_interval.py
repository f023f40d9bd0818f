"""trainer.checkpoint_interval: which values are accepted, and when a step count or a duration falls due."""
import pytest


def test_interval_option_is_checked():
    from utils.config.trainer_options import read_trainer_options
    from utils.errors import UserError

    assert read_trainer_options({"epochs": 1, "checkpoint_interval": "10min"}).checkpoint_interval == "10min"
    for bad in ("10 minutes", 0, -3, "0s", True):
        with pytest.raises(UserError, match="checkpoint_interval must be"):
            read_trainer_options({"epochs": 1, "checkpoint_interval": bad})


def test_duration_and_step_intervals_fall_due():
    from runs.checkpoint_interval import CheckpointInterval
    from utils.config.rules import parse_duration

    assert (parse_duration("30s"), parse_duration("10min"), parse_duration("1.5h")) == (30, 600, 5400)
    steps = CheckpointInterval(3)
    for _ in range(2):
        steps.step()
    assert not steps.due(clock=True)
    steps.step()
    assert steps.due(clock=False) and steps.due(clock=True)
    clock = CheckpointInterval("1s")
    clock.started -= 2
    assert clock.due(clock=True) and not clock.due(clock=False)  # a duration needs rank 0's clock
