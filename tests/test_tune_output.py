"""What a study shows: the model printout and resolved config once per study, not per trial; the
objective under the monitored metric's name; HParams columns that are the searched keys alone;
the shipped example search config."""
import json
import re

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from search.space import read_tune_section
from tests.helpers.cli import run_cli, train_in_process
from tests.helpers.configs import write_config
from tests.helpers.paths import REPO
from tests.helpers.tune_setup import LR_SPACE, load_study, tune_config, write

SPACE = {**LR_SPACE, "data_loader.args.batch_size": {"type": "categorical", "choices": [32, 64]}}


def hparams_content(log_dir):
    events = EventAccumulator(str(log_dir))
    events.Reload()
    content = events.PluginTagToContent("hparams")
    return {tag: plugin_data_pb2.HParamsPluginData.FromString(data) for tag, data in content.items()}


def test_a_study_shows_the_model_and_config_once_and_names_its_objective(tmp_path, synthetic_data_dir,
                                                                        monkeypatch, capsys):
    config = tune_config(tmp_path, synthetic_data_dir, space=SPACE,
                         trainer={"epochs": 1, "tensorboard": True})
    config["trainer"]["verbosity"] = 2  # the resolved config is a debug line
    code, out, err = run_cli("tune", ["-c", write(tmp_path, config)], monkeypatch, capsys)
    assert code == 0, err
    assert out.count(") COMPLETE: val_loss") == 2  # both trials ran
    assert out.count("MnistModel(") == 1 and out.count("Resolved config: ") == 1
    assert load_study(config).metric_names == ["val_loss"]  # optuna-dashboard shows "val_loss"

    for trial in ("s-trial0", "s-trial1"):  # HParams: the searched keys, declared as differing; no constants
        content = hparams_content(tmp_path / "saved" / "log" / "Mnist_LeNet" / trial)
        columns = content["_hparams_/experiment"].experiment.hparam_infos
        assert [(c.name, c.differs) for c in columns] == [(k, True) for k in SPACE]
        assert sorted(content["_hparams_/session_start_info"].session_start_info.hparams) == sorted(SPACE)

    # the same study with another metric is refused, in one line
    config["trainer"]["monitor"] = "min loss"
    code, _, err = run_cli("tune", ["-c", write(tmp_path, config)], monkeypatch, capsys)
    assert code == 2 and err == "error: study s optimizes val_loss, but trainer.monitor watches loss; name " \
                                "another study with --study\n"

    # a run after the study, in the same process, shows its model again: once per study, not per process
    plain = tune_config(tmp_path / "plain", synthetic_data_dir, trainer={"epochs": 1})
    plain.pop("tune")
    train_in_process("-c", write_config(tmp_path, plain, "plain.json"))
    assert capsys.readouterr().out.count("MnistModel(") == 1


def test_the_example_search_config_is_valid_json_with_a_small_study():
    config = json.loads((REPO / "search.json").read_text())  # plain JSON: no comments
    tune = read_tune_section(config)
    assert tune.study == "mnist_lr" and tune.trials == 4 and sorted(tune.space) == sorted(SPACE)
    budget = tune.trials * config["trainer"]["epochs"] * config["trainer"]["len_epoch"]
    assert budget <= 500  # batches over the whole study: well under a minute on 2 cores
    config.pop("tune")
    assert config == {**json.loads((REPO / "config.json").read_text()), "trainer": config["trainer"],
                      "data_loader": config["data_loader"]}  # otherwise the default experiment


def test_the_tune_section_shown_in_docs_search_md_is_the_one_search_json_ships():
    """docs/search.md says search.json is 4 trials of 3 epochs of 40 batches and shows its tune section."""
    shipped = json.loads((REPO / "search.json").read_text())
    (shown,) = re.findall(r'^```json\n("tune": \{.*?^\})\n```', (REPO / "docs" / "search.md").read_text(),
                          flags=re.MULTILINE | re.DOTALL)
    assert json.loads("{" + shown + "}")["tune"] == shipped["tune"]
    assert (shipped["tune"]["trials"], shipped["trainer"]["epochs"], shipped["trainer"]["len_epoch"]) == (4, 3, 40)
