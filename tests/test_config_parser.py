"""ConfigParser: CLI flags and their targets, init_obj / init_ftn, run ids, loggers, test.py's folders."""
import json
import logging
import types
from datetime import datetime

import pytest
import torch

import model.metric as module_metric
import runs.run
import test as test_script
import train
from parse_config import ConfigParser
from tests.helpers.cli import train_in_process
from tests.helpers.configs import shrink_config, write_config
from tests.helpers.runs import run_dirs
from utils.errors import UserError
from utils.lookup import find_by_name


@pytest.fixture
def config_dict(tmp_path, synthetic_data_dir):
    return shrink_config(tmp_path, synthetic_data_dir)


# ---- CLI flags -------------------------------------------------------------
def test_short_flags_reach_their_targets_and_the_saved_config(small_config):
    config = train_in_process("-c", small_config, "--lr", "0.01", "--bs", "32", "-o", "trainer.epochs=1")

    assert config["optimizer"]["args"]["lr"] == 0.01
    assert config["data_loader"]["args"]["batch_size"] == 32
    saved = json.loads((config.save_dir / "config.json").read_text())
    assert saved["optimizer"]["args"]["lr"] == 0.01
    assert saved["data_loader"]["args"]["batch_size"] == 32
    # the values were used, not only recorded: the optimizer's lr, and 540 train samples / 32 = 17 steps
    checkpoint = torch.load(config.save_dir / "checkpoint-epoch1.pth", weights_only=True)
    assert checkpoint["optimizer"]["param_groups"][0]["lr"] == 0.01
    assert checkpoint["global_step"] == 17


def test_long_flags_reach_their_targets(small_config):
    config = train.parse_args(["-c", str(small_config), "--learning_rate", "0.25", "--batch_size", "7"])

    assert config["optimizer"]["args"]["lr"] == 0.25
    assert config["data_loader"]["args"]["batch_size"] == 7


def test_absent_flags_keep_the_config_values(small_config):
    config = train.parse_args(["-c", str(small_config)])

    assert config["optimizer"]["args"]["lr"] == 0.001
    assert config["data_loader"]["args"]["batch_size"] == 64


# ---- init_obj / init_ftn -----------------------------------------------------
def test_init_obj_merges_config_args_with_given_ones(config_dict):
    parser = ConfigParser(config_dict)
    params = [torch.nn.Parameter(torch.zeros(3))]

    optimizer = parser.init_obj("optimizer", torch.optim, params, foreach=False)

    assert type(optimizer) is torch.optim.Adam
    assert optimizer.defaults["lr"] == 0.001
    assert optimizer.defaults["amsgrad"] is True
    assert optimizer.defaults["foreach"] is False
    assert optimizer.param_groups[0]["params"] == params


def test_init_obj_refuses_a_kwarg_the_config_also_sets(config_dict):
    parser = ConfigParser(config_dict)

    with pytest.raises(UserError, match=r"optimizer\.args\.lr"):
        parser.init_obj("optimizer", torch.optim, [torch.nn.Parameter(torch.zeros(1))], lr=0.5)


def test_init_ftn_returns_a_partial_with_the_config_args(config_dict):
    config_dict["top2"] = {"type": "top_k_acc", "args": {"k": 2}}
    parser = ConfigParser(config_dict)
    output = torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.2, 0.7], [0.6, 0.3, 0.1]])
    target = torch.tensor([1, 0, 2])  # ranks 2, 3, 3 -> only the first is in the top 2

    top2 = parser.init_ftn("top2", module_metric)

    assert top2.keywords == {"k": 2}
    assert top2(output, target).item() == pytest.approx(1 / 3)


def test_init_ftn_merges_positional_and_keyword_args(config_dict):
    parser = ConfigParser(config_dict)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)

    make_scheduler = parser.init_ftn("lr_scheduler", torch.optim.lr_scheduler, optimizer, last_epoch=-1)
    scheduler = make_scheduler()

    assert type(scheduler) is torch.optim.lr_scheduler.StepLR
    assert (scheduler.step_size, scheduler.gamma) == (50, 0.1)


def test_init_ftn_refuses_a_kwarg_the_config_also_sets(config_dict):
    config_dict["top2"] = {"type": "top_k_acc", "args": {"k": 2}}
    parser = ConfigParser(config_dict)

    with pytest.raises(UserError, match=r"top2\.args\.k"):
        parser.init_ftn("top2", module_metric, k=3)


# ---- run ids ---------------------------------------------------------------
class FrozenClock(datetime):
    """Every run starts at the same second."""

    @classmethod
    def now(cls, tz=None):
        return cls(2024, 3, 4, 5, 6, 7)


def test_runs_started_in_the_same_second_get_distinct_folders(config_dict, monkeypatch):
    monkeypatch.setattr(runs.run, "datetime", FrozenClock)
    first, second = ConfigParser(config_dict), ConfigParser(config_dict)
    assert first.run_id == second.run_id == "0304_050607"  # the classic %m%d_%H%M%S

    first.init_run()
    second.init_run()

    assert first.run_id != second.run_id
    assert first.save_dir != second.save_dir and first.log_dir != second.log_dir
    assert run_dirs(config_dict["trainer"]["save_dir"]) == sorted([first.save_dir, second.save_dir])
    for run in (first, second):
        assert (run.save_dir / "config.json").is_file()
        assert run.log_dir.is_dir() and run.log_dir.name == run.run_id == run.save_dir.name


def test_parts_are_built_before_any_folder_exists(config_dict, tmp_path, monkeypatch):
    # a part that cannot be built (the optimizer, after the loader and the model) must leave nothing behind
    config_dict["optimizer"]["type"] = "NoSuchOptimizer"
    parser = ConfigParser(config_dict)
    built, init_obj = [], ConfigParser.init_obj

    def recording_init_obj(self, name, *args, **kwargs):
        part = init_obj(self, name, *args, **kwargs)
        built.append(name)
        return part
    monkeypatch.setattr(ConfigParser, "init_obj", recording_init_obj)

    with pytest.raises(UserError, match="NoSuchOptimizer"):
        train.main(parser)

    assert built == ["data_loader", "arch"]  # they were built, then the optimizer failed
    assert not (tmp_path / "saved").exists()
    assert not parser.run.opened


# ---- loggers ---------------------------------------------------------------
@pytest.mark.parametrize("verbosity, level", [(0, logging.WARNING), (1, logging.INFO), (2, logging.DEBUG)])
def test_get_logger_levels(config_dict, verbosity, level):
    logger = ConfigParser(config_dict).get_logger(f"verbosity{verbosity}", verbosity)

    assert logger.name == f"verbosity{verbosity}"
    assert logger.level == level


def test_get_logger_refuses_an_unknown_verbosity(config_dict):
    with pytest.raises(UserError, match="verbosity option 3 is invalid"):
        ConfigParser(config_dict).get_logger("bad", 3)


# ---- test.py -----------------------------------------------------------------
def test_test_py_creates_no_run_folder(tmp_path, synthetic_data_dir):
    cfg = shrink_config(tmp_path, synthetic_data_dir, epochs=1)
    trained = train_in_process("-c", write_config(tmp_path, cfg))
    before = sorted((tmp_path / "saved").rglob("*"))

    test_script.main(test_script.parse_args(["-r", str(trained.save_dir / "model_best.pth")]))

    after = sorted((tmp_path / "saved").rglob("*"))
    assert [p for p in after if p not in before] == [trained.save_dir / "model_best.test.json"]


def test_a_config_cannot_name_a_private_or_imported_function():
    module = types.ModuleType("users_losses")
    exec("import math\nfrom math import sqrt\ndef mse(a, b): return a\ndef _helper(a): return a", vars(module))
    assert find_by_name(module, "mse", "loss") is module.mse
    for name in ("_helper", "sqrt", "math"):
        with pytest.raises(UserError, match=f"unknown loss '{name}' in users_losses; .*available: mse$"):
            find_by_name(module, name, "loss")
