"""utils/config/dotted.py, the one walker of config key paths: -o, the CLI flags' targets ('a;b;c', the classic way),
tune.space and the trackers' flattened parameters all go through it."""
import re

import pytest

from search.space import read_tune_section, with_values
from tests.helpers.paths import REPO
from utils.config.dotted import deepest, differences, flatten, get, key_path, put
from utils.config.overrides import updated_config
from utils.errors import UserError

CONFIG = {"name": "x", "optimizer": {"type": "Adam", "args": {"lr": 0.001}}, "trainer": {"epochs": 2},
          "metrics": ["accuracy"]}


@pytest.mark.parametrize("key", ["optimizer;args;lr", "optimizer.args.lr"])
def test_a_key_is_written_with_either_separator(key):
    assert key_path(key) == ["optimizer", "args", "lr"]
    assert get(CONFIG, key) == 0.001


def test_a_classic_target_with_semicolons_splits_on_them_only():
    assert key_path("data;my.key") == ["data", "my.key"]


@pytest.mark.parametrize("target", ["optimizer;args;lr", "optimizer.args.lr"])
def test_a_cli_flags_target_sets_the_value(target):
    config = updated_config(CONFIG, {target: 0.5, "data_loader;args;batch_size": None}, [])
    assert config["optimizer"]["args"]["lr"] == 0.5 and "data_loader" not in config
    assert CONFIG["optimizer"]["args"]["lr"] == 0.001  # a copy


def test_a_new_flag_target_makes_its_sections():
    config = updated_config(CONFIG, {"extra;notes;author": "me"}, [])
    assert config["extra"] == {"notes": {"author": "me"}}


def test_walking_stops_at_a_missing_key_or_a_value():
    assert deepest(CONFIG, ["optimizer", "args", "lr"]) == (0.001, 3)
    assert deepest(CONFIG, ["optimizer", "argz", "lr"]) == (CONFIG["optimizer"], 1)
    assert deepest(CONFIG, ["trainer", "epochs", "x"]) == (2, 2)
    assert get(CONFIG, "trainer.epochs.x", "none") == "none"


def test_put_makes_the_objects_on_the_way():
    config = {"a": {}}
    put(config, "a.b.c", 1)
    put(config, ["d"], 2)
    assert config == {"a": {"b": {"c": 1}}, "d": 2}


def test_flatten_and_differences_name_keys_the_same_way():
    flat = flatten({**CONFIG, "empty": {}})
    assert flat == {"name": "x", "optimizer.type": "Adam", "optimizer.args.lr": 0.001, "trainer.epochs": 2,
                    "metrics": ["accuracy"], "empty": {}}
    changed = {**CONFIG, "trainer": {"epochs": 3}}
    assert list(differences(CONFIG, changed)) == [(("trainer", "epochs"), 2, 3)]


def test_the_search_space_uses_the_same_walker():
    config = {**CONFIG, "tune": {"space": {"optimizer.args.lr": {"type": "float", "low": 0.01, "high": 0.1}}}}
    read_tune_section(config)
    assert with_values(CONFIG, {"optimizer.args.lr": 0.05})["optimizer"]["args"]["lr"] == 0.05
    config["tune"]["space"] = {"optimizer.args.lrr": {"type": "float", "low": 0.01, "high": 0.1}}
    with pytest.raises(UserError, match="unknown config key optimizer.args.lrr; did you mean optimizer.args.lr"):
        read_tune_section(config)
    config["tune"]["space"] = {"trainer.epochs.x": {"type": "int", "low": 1, "high": 2}}
    with pytest.raises(UserError, match="trainer.epochs is not an object"):
        read_tune_section(config)


def test_no_other_module_walks_key_paths_itself():
    """A second walker would be a second set of rules: the ';' split and the flattening live in one module."""
    walkers = re.compile(r"split\([\"'];[\"']\)|def flatten\(")
    found = [str(path.relative_to(REPO)) for path in REPO.rglob("*.py")
             if path.relative_to(REPO).parts[0] not in ("tests", ".git", "saved", "data")
             and walkers.search(path.read_text(encoding="utf-8"))]
    assert found == ["utils/config/dotted.py"]
