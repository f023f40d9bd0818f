"""-o key.path=value and +key.path=value: any config value from the command line, checked."""
import json

import pytest
import torch

import train
from tests.helpers.cli import run_cli, train_in_process
from tests.helpers.configs import shrink_config, write_config
from tests.synthetic_mnist import write_synthetic_mnist
from utils.config.overrides import parse_override
from utils.errors import UserError


@pytest.fixture
def config_path(tmp_path, synthetic_data_dir):
    return write_config(tmp_path, shrink_config(tmp_path, synthetic_data_dir))


def parse(config_path, *flags):
    return train.parse_args(["-c", str(config_path), *flags])


def test_the_issues_example_takes_effect_and_is_saved(tmp_path):
    data_dir = write_synthetic_mnist(tmp_path / "data", n_train=120, n_test=20)
    config_path = write_config(tmp_path, shrink_config(tmp_path, data_dir))
    config = train_in_process("-c", config_path, "-o", "trainer.epochs=3", "-o", "optimizer.args.weight_decay=1e-4",
                              "-o", "arch.type=MnistModel", "-o", "+trainer.len_epoch=1")
    saved = json.loads((config.save_dir / "config.json").read_text())
    assert saved["trainer"]["epochs"] == 3 and saved["trainer"]["len_epoch"] == 1
    assert saved["optimizer"]["args"]["weight_decay"] == 1e-4
    assert saved["arch"]["type"] == "MnistModel"
    latest = torch.load(config.save_dir / "model_latest.pth", weights_only=True)
    assert latest["epoch"] == 3 and latest["global_step"] == 3  # 3 epochs of 1 batch: both overrides acted
    assert latest["optimizer"]["param_groups"][0]["weight_decay"] == 1e-4
    assert json.loads(config_path.read_text())["trainer"]["epochs"] == 2  # the file itself is untouched


@pytest.mark.parametrize("raw, value", [
    ("3", 3), ("1e-4", 1e-4), ("true", True), ("null", None), ("[1, 2]", [1, 2]), ('{"a": 1}', {"a": 1}),
    ('"3"', "3"), ("MnistModel", "MnistModel"), ("min val_loss", "min val_loss"), ("", ""),
])
def test_values_are_json_literals_where_they_parse_else_strings(raw, value):
    path, parsed, allow_new = parse_override(f"a.b={raw}")
    assert (path, parsed, allow_new) == (["a", "b"], value, False)
    assert type(parsed) is type(value)


def test_overrides_of_several_types(config_path):
    config = parse(config_path, "-o", "trainer.tensorboard=true", "-o", "trainer.monitor=max val_accuracy",
                   "-o", 'metrics=["accuracy"]', "-o", 'name="123"', "-o", "data_loader.args.batch_size=32")
    assert config["trainer"]["tensorboard"] is True
    assert config["trainer"]["monitor"] == "max val_accuracy"
    assert config["metrics"] == ["accuracy"]
    assert config["name"] == "123"
    assert config["data_loader"]["args"]["batch_size"] == 32
    assert not (config_path.parent / "saved").exists()  # parsing makes no run folder


@pytest.mark.parametrize("flag, expected", [
    ("trainer.epoch=3", ["unknown config key trainer.epoch;", "did you mean trainer.epochs?",
                         "write -o trainer.epochs=3"]),
    ("optimizer.args.weight_decy=0.1", ["unknown config key optimizer.args.weight_decy",
                                        "did you mean optimizer.args.weight_decay?"]),
    ("optimiser.args.lr=0.1", ["unknown config key optimiser;", "did you mean optimizer?",
                               "+optimiser.args.lr=VALUE"]),
    ("trainer.my_option=2", ["unknown config key trainer.my_option", "-o +trainer.my_option=VALUE"]),
])
def test_an_unknown_path_exits_2_with_the_near_misses(config_path, monkeypatch, capsys, flag, expected):
    code, _, err = run_cli("train", ["-c", config_path, "-o", flag], monkeypatch, capsys)
    lines = err.splitlines()
    assert code == 2
    assert len(lines) == 1 and lines[0].startswith("error: ")
    for part in expected:
        assert part in lines[0]
    assert not (config_path.parent / "saved").exists()


@pytest.mark.parametrize("flag, expected", [
    ("trainer.epochs=three", ["trainer.epochs", "type string", "holds number (2)"]),
    ('trainer.epochs="3"', ["trainer.epochs", "type string", "holds number"]),
    ("trainer.tensorboard=1", ["trainer.tensorboard", "type number", "holds boolean"]),
    ("name=123", ["name=123", "holds string", "quote it as a JSON string"]),
    ("metrics=accuracy", ["metrics", "holds list"]),
    ("trainer.epochs=2.5", ["trainer.epochs must be a positive integer"]),  # same kind, caught by the check
    ("trainer.epochs.x=1", ["trainer.epochs.x", "trainer.epochs is not an object"]),
    ("trainer.epochs", ["'trainer.epochs' is not key.path=value"]),
])
def test_a_value_of_another_type_is_an_error_naming_the_key(config_path, monkeypatch, capsys, flag, expected):
    code, _, err = run_cli("train", ["-c", config_path, "-o", flag], monkeypatch, capsys)
    lines = err.splitlines()
    assert code == 2 and len(lines) == 1
    for part in expected:
        assert part in lines[0]


def test_plus_adds_new_keys_and_nested_sections(config_path):
    config = parse(config_path, "-o", "+trainer.len_epoch=2", "-o", "+extra.notes.author=me")
    assert config["trainer"]["len_epoch"] == 2
    assert config["extra"] == {"notes": {"author": "me"}}
    assert parse(config_path, "-o", "+trainer.epochs=5")["trainer"]["epochs"] == 5  # + on an existing key sets it
    with pytest.raises(UserError, match="trainer.epochs"):
        parse(config_path, "-o", "+trainer.epochs=five")  # and still checks its type


def test_interplay_with_the_registered_flags(config_path):
    assert parse(config_path, "--lr", "0.01")["optimizer"]["args"]["lr"] == 0.01
    both = parse(config_path, "--lr", "0.01", "--bs", "16", "-o", "trainer.epochs=1")
    assert both["optimizer"]["args"]["lr"] == 0.01
    assert both["data_loader"]["args"]["batch_size"] == 16 and both["trainer"]["epochs"] == 1
    # -o is applied after --lr/--bs, so it wins where both set the same key
    assert parse(config_path, "--lr", "0.01", "-o", "optimizer.args.lr=0.05")["optimizer"]["args"]["lr"] == 0.05
    assert parse(config_path, "-o", "optimizer.args.lr=0.05", "--lr", "0.01")["optimizer"]["args"]["lr"] == 0.05


def test_trainer_options_are_known_keys_without_plus(config_path):
    """Every option of the trainer table is settable with -o even when the config file leaves it out."""
    config = parse(config_path, "-o", "trainer.checkpoint_interval=10", "-o", "trainer.len_epoch=2",
                   "-o", "trainer.amp=bf16")
    assert config["trainer"]["checkpoint_interval"] == 10 and config["trainer"]["len_epoch"] == 2
    assert config.trainer_options.checkpoint_interval == 10 and config.trainer_options.amp == "bf16"
    with pytest.raises(UserError, match="trainer.len_epoch must be a positive integer"):
        parse(config_path, "-o", "trainer.len_epoch=0")  # still checked


@pytest.mark.parametrize("flag", ["+trainer.epoch=3", "trainer.epoch=3", "+trainer.len_epochs=4",
                                  "trainer.checkpoint_intervall=10", "trainer.checkpoint_interval=often"])
def test_every_error_suggests_a_form_that_works(config_path, monkeypatch, capsys, flag):
    code, _, err = run_cli("train", ["-c", config_path, "-o", flag], monkeypatch, capsys)
    lines = err.splitlines()
    assert code == 2 and len(lines) == 1
    suggested = lines[0].split(" -o ", 1)[1].split()[0]
    # a bad value: the suggestion names the key, the user picks the value
    suggested = suggested.replace("=...", "=10") if suggested.endswith("=...") else suggested.rstrip(";.,")
    assert parse(config_path, "-o", suggested), lines[0]  # the suggested form is accepted


def test_null_stands_for_any_type_either_way(tmp_path, synthetic_data_dir):
    """A null in the file takes a value of any type (trainer.keep_last), and a key may be set back to null."""
    cfg = shrink_config(tmp_path, synthetic_data_dir)
    cfg["trainer"]["keep_last"] = None
    config = parse(write_config(tmp_path, cfg), "-o", "trainer.keep_last=2", "-o", "lr_scheduler=null")
    assert config["trainer"]["keep_last"] == 2 and config["lr_scheduler"] is None
