"""Stops and kills of a search, in one process (docs/search.md, "Faults"): a stop inside a trial queues that
trial again, a stop just after a trial or during its last epoch's save ends the search without queueing a
finished trial, and only kills count toward the retry limit."""
import signal
import sys
import time

import optuna
from optuna.trial import TrialState

from tests.helpers.cli import run_cli
from tests.helpers.tune_setup import after_each_epoch, load_study, signal_self, tune_config, write


def run_ids(study):
    return [t.user_attrs.get("run_id") for t in study.trials]


def test_a_stop_inside_a_trial_is_one_line_and_names_the_tune_command(tmp_path, synthetic_data_dir, monkeypatch,
                                                                      capsys):
    config = tune_config(tmp_path, synthetic_data_dir, trainer={"epochs": 2}, trials=1)
    path = write(tmp_path, config)
    after_each_epoch(monkeypatch, lambda epoch: epoch == 1 and signal_self(signal.SIGTERM))
    code, out, err = run_cli("tune", ["-c", path], monkeypatch, capsys)
    assert code == 143 and "Traceback" not in err, err
    assert err.count("\n") == 1 and "trial 0 stopped; its run's state is saved: run the same command" in err
    assert "train.py -r" not in out + err and f"Resume with: python tune.py -c {path} (the same command)" in out
    assert [t.state for t in load_study(config).trials] == [TrialState.FAIL, TrialState.WAITING]


def test_a_stop_just_after_a_trial_completes_queues_nothing(tmp_path, synthetic_data_dir, monkeypatch, capsys):
    """Ctrl-C while the trial's line is printed: the study keeps that COMPLETE trial, and never trains it twice."""
    import tune

    config = tune_config(tmp_path, synthetic_data_dir, trainer={"epochs": 1}, trials=2)
    path = write(tmp_path, config)
    shown = tune.progress_line

    def then_ctrl_c(*args):
        monkeypatch.setattr(tune, "progress_line", shown)  # once
        signal_self(signal.SIGINT)
        return shown(*args)
    monkeypatch.setattr(tune, "progress_line", then_ctrl_c)
    code, _, err = run_cli("tune", ["-c", path], monkeypatch, capsys)
    assert [t.state for t in load_study(config).trials] == [TrialState.COMPLETE]  # no WAITING copy of it
    assert code == 130 and "stopped between trials" in err and "Traceback" not in err, err

    code, out, err = run_cli("tune", ["-c", path], monkeypatch, capsys)
    assert code == 0, err
    study = load_study(config)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2 and "Nothing to train" not in out
    assert run_ids(study) == ["s-trial0", "s-trial1"]


def test_a_stop_during_the_last_epochs_validation_stops_the_search(tmp_path, synthetic_data_dir, monkeypatch,
                                                                    capsys):
    from trainer.trainer import Trainer

    config = tune_config(tmp_path, synthetic_data_dir, trainer={"epochs": 1}, trials=2)
    path = write(tmp_path, config)
    validate = Trainer._valid_epoch

    def stopped_while_validating(self, epoch):
        monkeypatch.setattr(Trainer, "_valid_epoch", validate)  # once
        signal_self(signal.SIGTERM)
        return validate(self, epoch)
    monkeypatch.setattr(Trainer, "_valid_epoch", stopped_while_validating)
    code, _, err = run_cli("tune", ["-c", path], monkeypatch, capsys)
    assert code == 143 and "run the same command again" in err, err
    assert [t.state for t in load_study(config).trials] == [TrialState.COMPLETE]  # trained and saved whole

    code, _, err = run_cli("tune", ["-c", path], monkeypatch, capsys)
    assert code == 0, err
    assert [t.state for t in load_study(config).trials] == [TrialState.COMPLETE] * 2


def test_three_stops_then_a_kill_still_retry_the_trial(tmp_path, synthetic_data_dir, monkeypatch, capsys):
    """Stops are not failures: after three of them a kill is retried (MAX_RETRY counts kills), and the
    retry continues the same run."""
    config = tune_config(tmp_path, synthetic_data_dir, trainer={"epochs": 5}, trials=1,
                         heartbeat_interval=1, grace_period=1)
    path = write(tmp_path, config)
    pending = []  # what the next start does after its first epoch

    def act(epoch):
        action = pending.pop() if pending else None
        if action == "stop":
            signal_self(signal.SIGTERM)
        elif action == "kill":
            raise SystemExit(137)  # the worker dies: its trial stays RUNNING, as after a SIGKILL
    after_each_epoch(monkeypatch, act)
    for stopped_after in (1, 2, 3):
        pending[:] = ["stop"]
        code, out, _ = run_cli("tune", ["-c", path], monkeypatch, capsys)
        assert code == 143 and f"Stopped by SIGTERM after epoch {stopped_after}" in out
    pending[:] = ["kill"]
    assert run_cli("tune", ["-c", path], monkeypatch, capsys)[0] == 137
    assert load_study(config).trials[-1].state == TrialState.RUNNING
    time.sleep(2.5)  # its heartbeat is stale: this worker (alive) is judged by the heartbeat alone
    code, out, err = run_cli("tune", ["-c", path], monkeypatch, capsys)
    assert code == 0, err
    study = load_study(config)
    assert [t.state for t in study.trials] == [TrialState.FAIL] * 4 + [TrialState.COMPLETE]
    assert set(run_ids(study)) == {"s-trial0"} and study.trials[-1].user_attrs["epochs"] == 5
    assert sorted(p.name for p in (tmp_path / "saved" / "models" / "Mnist_LeNet").iterdir()) == ["s-trial0"]
    assert "queued again to continue its run (s-trial0, kill 1 of at most 3)" in out


def test_no_trial_line_advises_train_py(tmp_path, synthetic_data_dir, monkeypatch, capsys):
    """train.py -r would train a trial's run outside its study: neither the end of a trial's run nor the retry of
    one killed after its last save ("Nothing to train") names it; the same tune.py command is what continues."""
    config = tune_config(tmp_path, synthetic_data_dir, trainer={"epochs": 1}, trials=2, heartbeat_interval=1,
                         grace_period=1)
    path = write(tmp_path, config)
    kill = [True]
    after_each_epoch(monkeypatch, lambda epoch: kill and kill.pop() and sys.exit(137))  # killed before it is told
    code, out, err = run_cli("tune", ["-c", path], monkeypatch, capsys)
    assert code == 137 and load_study(config).trials[0].state == TrialState.RUNNING
    time.sleep(2.5)  # its heartbeat is stale
    code, out, err = run_cli("tune", ["-c", path], monkeypatch, capsys)
    assert code == 0, err
    assert "The run has trained its 1 epochs already; its result is recorded as it is" in out
    assert "Checkpoints: " in out and "train.py" not in out + err
    assert [t.state for t in load_study(config).trials] == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]


def test_a_retried_trial_whose_run_lost_its_config_names_the_tune_command(tmp_path, synthetic_data_dir, monkeypatch,
                                                                         capsys):
    config = tune_config(tmp_path, synthetic_data_dir, trainer={"epochs": 2}, trials=1, heartbeat_interval=1,
                         grace_period=1)
    path = write(tmp_path, config)
    kill = [True]
    after_each_epoch(monkeypatch, lambda epoch: kill and kill.pop() and sys.exit(137))
    assert run_cli("tune", ["-c", path], monkeypatch, capsys)[0] == 137
    (tmp_path / "saved" / "models" / "Mnist_LeNet" / "s-trial0" / "config.json").unlink()
    time.sleep(2.5)  # its heartbeat is stale
    code, _, err = run_cli("tune", ["-c", path], monkeypatch, capsys)
    assert code == 2 and err.count("\n") == 1 and "holds checkpoints but no config.json; put it back" in err, err
    assert f"then run python tune.py -c {path} (the same command)" in err and "train.py" not in err


def test_a_trial_killed_a_fourth_time_is_given_up(capsys):
    """Three kills are retried; the fourth is not (a point that kills its worker every time), and the log says so."""
    from search.recovery import KILLS, MAX_RETRY, retry_after_kill

    study, on_dead = optuna.create_study(), retry_after_kill()
    lr = optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)
    for kills_before, retried in ((MAX_RETRY - 1, True), (MAX_RETRY, False)):
        study.add_trial(optuna.trial.create_trial(state=TrialState.FAIL, params={"lr": 0.01},
                                                  distributions={"lr": lr}, user_attrs={"run_id": "s-trial0"},
                                                  system_attrs={KILLS: kills_before}))
        assert on_dead(study, study.trials[-1]) is retried
        if retried:
            queued = study.trials[-1]
            assert (queued.state, queued.system_attrs[KILLS], queued.params) == (TrialState.WAITING, MAX_RETRY,
                                                                                 {"lr": 0.01})
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.WAITING, TrialState.FAIL]
    assert "trial 2 (s-trial0): its worker is gone again, killed 4 times: given up" in capsys.readouterr().out
