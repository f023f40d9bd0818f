"""A study's results mean what they say (docs/search.md, "Faults"): a trial that is NaN every epoch is never
best, a reused study keeps its base config, an in-trial config error is one line, and a trial whose run another
job holds is left to that job while the worker goes on."""
from optuna.trial import TrialState

from tests.helpers.cli import run_cli
from tests.helpers.locks import lock_held_elsewhere
from tests.helpers.tune_setup import load_study, tune_config, write


def runs_dir(tmp_path):
    return tmp_path / "saved" / "models" / "Mnist_LeNet"


def test_a_trial_that_is_nan_every_epoch_is_pruned_and_never_best(tmp_path, synthetic_data_dir, monkeypatch,
                                                                   capsys):
    import model.loss

    config = tune_config(tmp_path, synthetic_data_dir, trainer={"epochs": 2}, trials=1)
    path = write(tmp_path, config)
    plain = model.loss.nll_loss

    def nll_loss(output, target):  # diverged from the first batch on
        return plain(output, target) * float("nan")
    nll_loss.__module__ = model.loss.__name__  # a public function of model.loss, as the config names it
    monkeypatch.setattr(model.loss, "nll_loss", nll_loss)
    code, out, err = run_cli("tune", ["-c", path], monkeypatch, capsys)
    assert code == 0, err
    (trial,) = load_study(config).trials
    assert trial.state == TrialState.PRUNED and "diverged" in out
    assert "Test it:      python test.py" not in out and "No trial has completed yet." in out
    assert not (runs_dir(tmp_path) / "s-trial0" / "model_best.pth").exists()


def test_the_summary_offers_test_py_only_for_a_model_best_that_exists(tmp_path, synthetic_data_dir, monkeypatch,
                                                                     capsys):
    config = tune_config(tmp_path, synthetic_data_dir, trainer={"epochs": 1}, trials=1)
    path = write(tmp_path, config)
    assert run_cli("tune", ["-c", path], monkeypatch, capsys)[0] == 0
    (runs_dir(tmp_path) / "s-trial0" / "model_best.pth").unlink()  # trained on another machine, or moved
    code, out, _ = run_cli("tune", ["-c", path], monkeypatch, capsys)
    assert code == 0 and "Test it:      python test.py" not in out and "its model_best.pth is not in" in out


def test_a_reused_study_refuses_another_base_config(tmp_path, synthetic_data_dir, monkeypatch, capsys):
    config = tune_config(tmp_path, synthetic_data_dir, trainer={"epochs": 1}, trials=1)
    path = write(tmp_path, config)
    assert run_cli("tune", ["-c", path], monkeypatch, capsys)[0] == 0
    assert load_study(config).user_attrs["monitor"] == "min val_loss"

    code, _, err = run_cli("tune", ["-c", path, "--bs", "32", "--trials", "2"], monkeypatch, capsys)
    assert code == 2 and err.count("\n") == 1, err
    assert "was made with another base config (data_loader.args.batch_size differ)" in err
    assert len(load_study(config).trials) == 1
    # what a run may change (MAY_CHANGE), and the searched keys' base values, keep the study's trials comparable
    for flags in (["-o", "trainer.save_period=2"], ["--lr", "0.5"]):
        code, out, err = run_cli("tune", ["-c", path, *flags], monkeypatch, capsys)
        assert code == 0 and "1 of 1 trials done" in out, err


def test_an_in_trial_config_error_is_one_line(tmp_path, synthetic_data_dir, monkeypatch, capsys):
    """The first point builds (checked before any trial); the one the grid picks does not."""
    config = tune_config(tmp_path, synthetic_data_dir, trainer={"epochs": 1}, trials=1,
                         space={"optimizer.type": {"type": "categorical", "choices": ["Adam", "Adamm"]}},
                         sampler={"type": "GridSampler", "args": {"search_space": {"optimizer.type": ["Adamm"]}}})
    code, _, err = run_cli("tune", ["-c", write(tmp_path, config)], monkeypatch, capsys)
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: trial 0 (s-trial0): "), err
    assert [t.state for t in load_study(config).trials] == [TrialState.FAIL]


def test_a_trial_whose_run_is_busy_is_left_to_its_owner(tmp_path, synthetic_data_dir, monkeypatch, capsys):
    config = tune_config(tmp_path, synthetic_data_dir, trainer={"epochs": 1}, trials=1)
    (runs_dir(tmp_path) / "s-trial0").mkdir(parents=True)
    with lock_held_elsewhere(runs_dir(tmp_path) / "s-trial0"):
        code, out, err = run_cli("tune", ["-c", write(tmp_path, config)], monkeypatch, capsys)
    assert code == 0 and "Traceback" not in err, err
    assert "trial 0 (s-trial0) FAIL" in out and "left to the job that trains its run" in out
    study = load_study(config)
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert study.trials[1].user_attrs["run_id"] == "s-trial1"
