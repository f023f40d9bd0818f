"""tune.py in one process: trials are named runs, seeded studies repeat, pruning stops a bad trial,
a stale trial is retried by the heartbeat, and every bad input is one line before any trial."""
import json
import time

import optuna
import pandas as pd
import pytest
import torch
from optuna.trial import TrialState

import test as test_script
from search.storage import open_storage
from tests.helpers.cli import run_cli
from tests.helpers.tune_setup import LR_SPACE, load_study, tune_config, write


def table_rows(out):
    """The rows of the table of all trials that ends a study's output, each split into its cells."""
    lines = out.splitlines()
    start = lines.index(next(line for line in lines if line.startswith("trial  run ")))
    assert lines[start].split() == ["trial", "run", "state", "val_loss", "epochs", "optimizer.args.lr"]
    end = next(i for i in range(start, len(lines)) if lines[i].startswith("Best: "))
    return [line.split() for line in lines[start + 1:end]]


def runs_of(tmp_path):
    return sorted(p.name for p in (tmp_path / "saved" / "models" / "Mnist_LeNet").glob("*"))


def test_trials_are_named_runs(tmp_path, synthetic_data_dir, monkeypatch, capsys):
    config = tune_config(tmp_path, synthetic_data_dir, trainer={"epochs": 1, "tensorboard": True})
    code, out, err = run_cli("tune", ["-c", write(tmp_path, config)], monkeypatch, capsys)
    assert code == 0, err
    assert runs_of(tmp_path) == ["s-trial0", "s-trial1"]
    for run in ("s-trial0", "s-trial1"):  # each trial's parameters and result, for TensorBoard's HParams tab
        events = b"".join(p.read_bytes() for p in (tmp_path / "saved" / "log" / "Mnist_LeNet" / run).glob("events.*"))
        assert b"_hparams_/session_start_info" in events and b"optimizer.args.lr" in events
    study = load_study(config)
    for trial in study.trials:
        run = tmp_path / "saved" / "models" / "Mnist_LeNet" / f"s-trial{trial.number}"
        saved = json.loads((run / "config.json").read_text())
        assert saved["optimizer"]["args"]["lr"] == trial.params["optimizer.args.lr"]
        assert saved["tune"] == {"study": "s", "trial": trial.number}
        assert json.loads((run / "provenance.json").read_text())["tune"]["trial"] == trial.number
        assert (run / "metrics.csv").read_text().count("\n") == 2
        assert f"trial {trial.number} (s-trial{trial.number}) COMPLETE: val_loss" in out
        # its value is the run's best monitored value, the one its model_best.pth holds
        assert trial.value == pytest.approx(pd.read_csv(run / "metrics.csv")["val_loss"].min(), rel=1e-6)
        saved_best = torch.load(run / "model_best.pth", weights_only=True)["monitor"]["best"]
        assert trial.value == pytest.approx(saved_best, rel=1e-6)
    assert table_rows(out) == [[str(t.number), f"s-trial{t.number}", "COMPLETE", f"{t.value:.6g}", "1",
                                f"{t.params['optimizer.args.lr']:.6g}"] for t in study.trials]
    best = study.best_trial
    best_model = tmp_path / "saved" / "models" / "Mnist_LeNet" / f"s-trial{best.number}" / "model_best.pth"
    assert f"Test it:      python test.py -r {best_model}" in out
    assert f"optuna-dashboard sqlite:///{tmp_path / 'saved' / 'tune' / 's.db'}" in out
    # test.py -r works on a trial, as on any run
    test_script.main(test_script.parse_args(["-r", str(best_model)]))
    assert json.loads(best_model.with_name("model_best.test.json").read_text())["n_samples"] == 200

    # the same command again: the study already has its trials, nothing is trained
    code, out, _ = run_cli("tune", ["-c", write(tmp_path, config)], monkeypatch, capsys)
    assert code == 0 and "2 of 2 trials done" in out and len(load_study(config).trials) == 2


def test_seeded_study_repeats_its_parameters(tmp_path, synthetic_data_dir, monkeypatch, capsys):
    sequences = []
    for name in ("a", "b"):
        config = tune_config(tmp_path / name, synthetic_data_dir, trainer={"epochs": 1}, trials=3,
                             space={**LR_SPACE, "data_loader.args.batch_size": {"type": "categorical",
                                                                               "choices": [32, 64, 128]}})
        assert run_cli("tune", ["-c", write(tmp_path, config)], monkeypatch, capsys)[0] == 0
        sequences.append([(t.params, t.value) for t in load_study(config).trials])
    assert sequences[0] == sequences[1]
    assert len({params["optimizer.args.lr"] for params, _ in sequences[0]}) == 3


@pytest.mark.parametrize("sampler", ["TPESampler", "RandomSampler"])
def test_workers_sharing_a_study_draw_other_points_from_one_seed(sampler):
    """Trial k is drawn by the sampler seeded with seed + k: two workers (each its own sampler from the same
    section) asking trials 0 and 1 of one study draw what one worker alone would, not the same point twice."""
    from search.sampler import build_sampler

    spec, lr = {"type": sampler, "args": {"seed": 7}}, optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)
    storage = optuna.storages.InMemoryStorage()
    workers = [optuna.create_study(storage=storage, study_name="s", sampler=build_sampler(spec), load_if_exists=True)
               for _ in range(2)]
    drawn = [worker.ask({"lr": lr}).params["lr"] for worker in workers]  # trials 0 and 1, both still running
    alone = [optuna.create_study(sampler=getattr(optuna.samplers, sampler)(seed=7 + k)).ask({"lr": lr}).params["lr"]
             for k in (0, 1)]
    assert drawn == alone and drawn[0] != drawn[1]


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")  # QMCSampler
def test_samplers_that_fix_a_sequence_when_built_keep_their_one_seed():
    from search.sampler import build_sampler

    qmc = build_sampler({"type": "QMCSampler", "args": {"seed": 3}})
    assert type(qmc) is optuna.samplers.QMCSampler and qmc._seed == 3


def test_pruner_stops_a_bad_trial_after_its_checkpoint(tmp_path, synthetic_data_dir, monkeypatch, capsys):
    """lr 10 diverges; the pruner stops it after epoch 1, keeping that epoch's checkpoint."""
    config = tune_config(tmp_path, synthetic_data_dir, trainer={"epochs": 3},
                         space={"optimizer.args.lr": {"type": "categorical", "choices": [0.003, 10.0]}},
                         sampler={"type": "GridSampler", "args": {"seed": 0, "search_space": {
                             "optimizer.args.lr": [0.003, 10.0]}}},
                         pruner={"type": "ThresholdPruner", "args": {"upper": 1.5}})
    code, out, err = run_cli("tune", ["-c", write(tmp_path, config)], monkeypatch, capsys)
    assert code == 0, err
    trials = {t.params["optimizer.args.lr"]: t for t in load_study(config).trials}
    bad, good = trials[10.0], trials[0.003]
    assert (bad.state, bad.user_attrs["epochs"], list(bad.intermediate_values)) == (TrialState.PRUNED, 1, [1])
    assert (good.state, good.user_attrs["epochs"]) == (TrialState.COMPLETE, 3)
    bad_run = tmp_path / "saved" / "models" / "Mnist_LeNet" / f"s-trial{bad.number}"
    assert sorted(p.name for p in bad_run.glob("checkpoint-*.pth")) == ["checkpoint-epoch1.pth"]
    assert f"trial {bad.number} (s-trial{bad.number}) PRUNED" in out


def test_heartbeat_retries_a_stale_trial_with_its_parameters(tmp_path, synthetic_data_dir, monkeypatch, capsys):
    """A trial left RUNNING by a worker on another machine is retried once its heartbeat is stale."""
    config = tune_config(tmp_path, synthetic_data_dir, trainer={"epochs": 1}, trials=1,
                         heartbeat_interval=1, grace_period=1)
    url = f"sqlite:///{tmp_path / 'saved' / 'tune' / 's.db'}"
    (tmp_path / "saved" / "tune").mkdir(parents=True)
    storage = open_storage(url, 1, 1, None)
    study = optuna.create_study(storage=storage, study_name="s")
    trial = study.ask()
    trial.suggest_float("optimizer.args.lr", 1e-4, 1e-1, log=True)
    trial.set_user_attr("run_id", "s-trial0")
    trial.set_user_attr("worker", {"host": "elsewhere", "pid": 1, "trial": 0})
    storage.record_heartbeat(trial._trial_id)
    time.sleep(2.5)
    code, out, err = run_cli("tune", ["-c", write(tmp_path, config)], monkeypatch, capsys)
    assert code == 0, err
    stale, retry = load_study(config).trials
    assert (stale.state, retry.state) == (TrialState.FAIL, TrialState.COMPLETE)
    assert retry.params == stale.params and retry.user_attrs["run_id"] == "s-trial0"
    assert runs_of(tmp_path) == ["s-trial0"]


BAD_INPUTS = {
    "unknown space key": (lambda c: c["tune"]["space"].update({"optimizer.args.lrr": LR_SPACE["optimizer.args.lr"]}),
                          "unknown config key optimizer.args.lrr; did you mean optimizer.args.lr?"),
    "type mismatch": (lambda c: c["tune"]["space"].update(
        {"data_loader.args.batch_size": {"type": "categorical", "choices": ["64", 128]}}),
        "choice '64' is a str, but the config holds a number (64)"),
    "float on a string": (lambda c: c["tune"]["space"].update({"loss": {"type": "float", "low": 0, "high": 1}}),
                          "tune.space.loss is a float dimension, but the config holds a str"),
    "low above high": (lambda c: c["tune"]["space"]["optimizer.args.lr"].update(low=0.5, high=0.1),
                       "tune.space.optimizer.args.lr has low 0.5 > high 0.1"),
    "unknown sampler": (lambda c: c["tune"].update(sampler={"type": "TPESampller"}),
                        "unknown tune.sampler type 'TPESampller' in optuna.samplers; did you mean 'TPESampler'?"),
    "unknown pruner": (lambda c: c["tune"].update(pruner={"type": "MedianPrunner"}),
                       "unknown tune.pruner type 'MedianPrunner' in optuna.pruners; did you mean 'MedianPruner'?"),
    "bad sampler args": (lambda c: c["tune"].update(sampler={"type": "TPESampler", "args": {"sed": 1}}),
                         "tune.sampler (TPESampler): got an unexpected keyword argument 'sed'"),
    "unreachable storage": (lambda c: c["tune"].update(storage="postgresql://nobody@127.0.0.1:9/none"),
                            "cannot reach the study storage postgresql+psycopg://nobody@127.0.0.1:9/none"),
    "monitor not produced": (lambda c: c["trainer"].update(monitor="min val_los"),
                             "trainer.monitor watches 'val_los', which this run does not produce"),
    "monitor off": (lambda c: c["trainer"].update(monitor="off"), "tune.py optimizes trainer.monitor"),
    "no space": (lambda c: c["tune"].pop("space"), "config has no 'tune' section with a 'space'"),
    "misspelt tune key": (lambda c: c["tune"].update(trails=3), "unknown key tune.trails; did you mean tune.trials?"),
    "no wait for an outage": (lambda c: c["tune"].update(storage_wait=0),
                              "tune.storage_wait must be a positive number of seconds, got 0"),
    # the study names its trials' runs <study>-trial<k>: refused by the run-name rule before a study exists
    "study with a space": (lambda c: c["tune"].update(study="lr sweep"),
                           "study name from tune.study: 'lr sweep' is not a run name"),
    "study without room for -trial<k>": (lambda c: c["tune"].update(study="s" * 99),
                                         "is not a run name: use at most 88 letters"),
    "in-memory storage": (lambda c: c["tune"].update(storage="sqlite:///"),
                          "storage sqlite:/// is an in-memory SQLite database"),
    "in-memory storage, named": (lambda c: c["tune"].update(storage="sqlite:///:memory:"),
                                 "storage sqlite:///:memory: is an in-memory SQLite database"),
    "grid without a space key": (lambda c: c["tune"].update(sampler={"type": "GridSampler", "args": {
        "search_space": {"data_loader.args.batch_size": [32]}}}),
        "(GridSampler) has no values for optimizer.args.lr; give it exactly the keys of tune.space"),
    "config name with a space": (lambda c: (c["tune"].pop("study"), c.update(name="My Net")),
                                 "study name from the config's name: 'My Net' is not a run name"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_one_line_before_any_trial(case, tmp_path, synthetic_data_dir, monkeypatch, capsys):
    config = tune_config(tmp_path, synthetic_data_dir)
    change, expected = BAD_INPUTS[case]
    change(config)
    code, out, err = run_cli("tune", ["-c", write(tmp_path, config)], monkeypatch, capsys)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: ") and expected in err, err
    assert runs_of(tmp_path) == [] and not (tmp_path / "saved" / "tune").exists()


@pytest.mark.parametrize("flags, expected", [(["--trials", "0"], "argument --trials: invalid positive_int"),
                                             (["--study", "a/b"], "argument --study: 'a/b' is not a run name"),
                                             (["--study", "s" * 99], "is not a run name: use at most 88 letters"),
                                             (["-o", "trainer.len_epochs=2"], "did you mean trainer.len_epoch?")])
def test_bad_flag_is_one_line(flags, expected, tmp_path, synthetic_data_dir, monkeypatch, capsys):
    config_path = write(tmp_path, tune_config(tmp_path, synthetic_data_dir))
    code, _, err = run_cli("tune", ["-c", config_path, *flags], monkeypatch, capsys)
    assert code == 2 and err.count("\n") == 1 and expected in err, err


def test_trainer_options_are_known_keys_for_o_as_in_train_py(tmp_path, synthetic_data_dir, monkeypatch, capsys):
    """-o trainer.len_epoch=2 without +, though the config leaves it out: train.py's rule, in tune.py too."""
    config = tune_config(tmp_path, synthetic_data_dir, trainer={"epochs": 1}, trials=1)
    assert "len_epoch" not in config["trainer"]
    code, _, err = run_cli("tune", ["-c", write(tmp_path, config), "-o", "trainer.len_epoch=2"], monkeypatch, capsys)
    assert code == 0, err
    saved = json.loads((tmp_path / "saved" / "models" / "Mnist_LeNet" / "s-trial0" / "config.json").read_text())
    assert saved["trainer"]["len_epoch"] == 2


def test_a_flag_added_to_train_py_works_in_tune_py(tmp_path, synthetic_data_dir, monkeypatch, capsys):
    """The README's way to add a flag (one more CustomArgs in train.py's custom_args) reaches tune.py too."""
    import train

    shipped = train.custom_args()
    added = type(shipped[0])(["--wd", "--weight_decay"], float, "optimizer;args;weight_decay")
    monkeypatch.setattr(train, "custom_args", lambda: [*shipped, added])
    config = tune_config(tmp_path, synthetic_data_dir, trainer={"epochs": 1}, trials=1)
    code, _, err = run_cli("tune", ["-c", write(tmp_path, config), "--wd", "0.25", "--bs", "32"], monkeypatch, capsys)
    assert code == 0, err
    saved = json.loads((tmp_path / "saved" / "models" / "Mnist_LeNet" / "s-trial0" / "config.json").read_text())
    assert saved["optimizer"]["args"]["weight_decay"] == 0.25 and saved["data_loader"]["args"]["batch_size"] == 32
