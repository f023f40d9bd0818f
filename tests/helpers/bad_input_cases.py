"""The bad inputs of tests/test_bad_input.py: each case builds the command line of one mistake and names the
parts its one error line must hold."""
import json
import random

import torch

from tests.helpers.configs import write_config
from tests.synthetic_mnist import write_synthetic_mnist

# ---- building the inputs ------------------------------------------------------


def _config_case(mutate):
    """A case that writes the shrunk config changed by `mutate(config)` and passes it with -c."""
    def build(tmp_path, config):
        mutate(config)
        return ["-c", write_config(tmp_path, config)]
    return build


def _drop(*path):
    def mutate(config):
        node = config
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]
    return _config_case(mutate)


def _set(value, *path):
    def mutate(config):
        node = config
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return _config_case(mutate)


def _config_text(text):
    def build(tmp_path, config):
        path = tmp_path / "config.json"
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return ["-c", path]
    return build


def _with_flags(*flags):
    def build(tmp_path, config):
        return ["-c", write_config(tmp_path, config), *flags]
    return build


def _checkpoint_for(config, state_dict):
    """A checkpoint of this template's shape holding `state_dict`."""
    return {"arch": "MnistModel", "epoch": 1, "resume_batch": 0, "state_dict": state_dict, "config": config}


def _write_run(tmp_path, config, state_dict):
    """A run folder as train.py leaves it, with model_latest.pth holding `state_dict`."""
    run = tmp_path / "saved" / "models" / config["name"] / "0101_000000"
    run.mkdir(parents=True)
    torch.save(_checkpoint_for(config, state_dict), run / "model_latest.pth")
    (run / "config.json").write_text(json.dumps(config))
    (run / "metrics.csv").write_text("epoch,loss\n1,2.0\n")
    return run / "model_latest.pth"


def _lenet_state():
    from model.model import MnistModel
    return MnistModel().state_dict()


def _resume_other_arch(tmp_path, config):
    # keys of another network: a wider first layer and a layer LeNet lacks
    other = {"conv1.weight": torch.zeros(32, 1, 3, 3), "head.weight": torch.zeros(10, 50)}
    return ["-r", _write_run(tmp_path, config, other)]


def _resume_truncated(tmp_path, config):
    path = _write_run(tmp_path, config, _lenet_state())
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return ["-r", path]


def _resume_file(content):
    def build(tmp_path, config):
        path = tmp_path / "not_a_checkpoint.pth"
        path.write_bytes(content)
        return ["-r", path]
    return build


def _resume_plain_dict(tmp_path, config):
    path = tmp_path / "weights.pth"
    torch.save(_lenet_state(), path)  # bare weights: no config, no epoch
    return ["-r", path]


def _no_mnist_files(tmp_path, config):
    (tmp_path / "empty_data").mkdir()
    config["data_loader"]["args"].update(data_dir=str(tmp_path / "empty_data"), download=False)
    return ["-c", write_config(tmp_path, config)]


def _partial_mnist_files(tmp_path, config):
    data = write_synthetic_mnist(tmp_path / "partial", n_train=20, n_test=10)
    (data / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").unlink()
    config["data_loader"]["args"].update(data_dir=str(data), download=False)
    return ["-c", write_config(tmp_path, config)]


def _monitor_without_validation(tmp_path, config):
    config["data_loader"]["args"]["validation_split"] = 0
    config["trainer"]["monitor"] = "min val_loss"
    return ["-c", write_config(tmp_path, config)]


def _save_dir_under_a_file(tmp_path, config):
    (tmp_path / "a_file").write_text("not a folder")
    config["trainer"]["save_dir"] = str(tmp_path / "a_file" / "saved")
    return ["-c", write_config(tmp_path, config)]


ARCHS = "ImageClassifier, MnistModel"  # every model model/model.py offers
ONE_CYCLE = {"type": "OneCycleLR", "args": {"max_lr": 0.01, "total_steps": 5}, "step": "batch"}

NOT_A_CHECKPOINT = ["not_a_checkpoint.pth is not a checkpoint", "not a file written by torch.save",
                    "written by train.py"]

# id -> (build(tmp_path, config) -> argv, substrings the one error line must contain)
CASES = {
    "config-missing": (lambda t, c: ["-c", t / "nope.json"], ["nope.json", "does not exist", "-c"]),
    "config-is-a-folder": (lambda t, c: ["-c", t], ["cannot read config file", "check the path"]),
    "config-not-utf8": (_config_text(b"\xff\xfe\x00{"), ["cannot read config file"]),
    "config-invalid-json": (_config_text('{"name": "x",\n  "arch": }\n'),
                            ["not valid JSON", "line 2, column 11", "fix the file"]),
    "config-not-object": (_config_text("[1, 2]"), ["must hold a JSON object", "list"]),
    **{f"no-{key}": (_drop(key), [f"no '{key}' section", "add it"])
       for key in ("arch", "data_loader", "optimizer", "loss", "metrics", "trainer")},
    "no-trainer.epochs": (_drop("trainer", "epochs"), ["no 'trainer.epochs'", "add it"]),
    "epochs-ten": (_set("ten", "trainer", "epochs"), ["trainer.epochs must be a positive integer", "'ten'"]),
    "batch_size-0": (_set(0, "data_loader", "args", "batch_size"),
                     ["data_loader.args.batch_size must be a positive integer", "got 0"]),
    "lr-negative": (_set(-0.1, "optimizer", "args", "lr"), ["optimizer.args.lr must be a non-negative", "-0.1"]),
    "validation_split-1.0": (_set(1.0, "data_loader", "args", "validation_split"),
                             ["validation_split must be a fraction in [0, 1)", "got 1.0"]),
    "validation_split-count-600": (_set(600, "data_loader", "args", "validation_split"),
                                   ["validation_split=600 leaves no training data from 600 samples",
                                    "count below 600"]),
    "monitor-sideways": (_set("sideways val_loss", "trainer", "monitor"),
                         ["trainer.monitor must be", "'min val_loss'", "sideways"]),
    "verbosity-7": (_set(7, "trainer", "verbosity"), ["trainer.verbosity must be 0, 1 or 2", "got 7"]),
    "trainer-key-typo": (_set(3, "trainer", "early_stoping"),
                         ["unknown key trainer.early_stoping", "did you mean trainer.early_stop"]),
    "section-key-typo": (_set({"lr": 0.1}, "optimizer", "arg"),
                         ["unknown key optimizer.arg", "did you mean optimizer.args"]),
    "monitor-missing-metric": (_monitor_without_validation,
                               ["trainer.monitor watches 'val_loss'", "monitor one of: loss, accuracy, top_k_acc ",
                                "validation split"]),
    "one-cycle-too-short": (_set(ONE_CYCLE, "lr_scheduler"),
                            ["OneCycleLR stops after total_steps=5", "needs 18", "lr_scheduler.args.total_steps"]),
    "save_dir-under-a-file": (_save_dir_under_a_file,
                              ["trainer.save_dir", "a_file is not a folder", "-o trainer.save_dir=PATH"]),
    "arch-too-few-classes": (_set({"num_classes": 5}, "arch", "args"),  # synthetic MNIST labels go up to 9
                             ["the data holds label", "but the model outputs 5 classes", "arch.args.num_classes"]),
    "arch-typo": (_set("MnistModle", "arch", "type"),
                  ["unknown arch type 'MnistModle'", "did you mean 'MnistModel'", f"available: {ARCHS}"]),
    **{f"arch-{name}": (_set(name, "arch", "type"), [f"unknown arch type '{name}'", f"available: {ARCHS}"])
       for name in ("BaseModel", "nn", "F", "__builtins__", "__name__")},
    "loss-unknown": (_set("nll_los", "loss"), ["unknown loss 'nll_los'", "did you mean 'nll_loss'"]),
    "loss-imported-F": (_set("F", "loss"), ["unknown loss 'F'", "available: nll_loss"]),
    "metric-unknown": (_set(["acuracy"], "metrics"),
                       ["unknown metric 'acuracy'", "did you mean 'accuracy'", "accuracy, top_k_acc"]),
    "metric-imported-torch": (_set(["torch"], "metrics"), ["unknown metric 'torch'"]),
    "optimizer-unknown": (_set("Adamm", "optimizer", "type"), ["unknown optimizer type 'Adamm'", "did you mean"]),
    "optimizer-submodule": (_set("lr_scheduler", "optimizer", "type"), ["unknown optimizer type 'lr_scheduler'"]),
    "scheduler-unknown": (_set({"type": "StepLRR", "args": {}}, "lr_scheduler"),
                          ["unknown lr_scheduler type 'StepLRR'", "did you mean 'StepLR'"]),
    "data_loader-base-class": (_set("BaseDataLoader", "data_loader", "type"),
                               ["unknown data_loader type 'BaseDataLoader'", "available: MnistDataLoader"]),
    "arch-bad-argument": (_set({"num_clases": 10}, "arch", "args"), ["'num_clases'", "accepts: num_classes"]),
    "optimizer-bad-argument": (_set({"lr": 0.1, "momentum": 0.9}, "optimizer", "args"),
                               ["optimizer (Adam)", "'momentum'", "accepts: params, lr"]),
    "override-unknown-key": (_with_flags("-o", "trainer.epochz=3"),
                             ["unknown config key trainer.epochz", "did you mean trainer.epochs"]),
    "flag-lr-abc": (_with_flags("--lr", "abc"), ["--lr", "'abc'", "--help"]),
    "flag-bs-negative": (_with_flags("--bs", "-3"), ["--bs", "'-3'", "--help"]),
    "neither-c-nor-r": (lambda t, c: [], ["give a config with -c", "-r"]),
    "resume-missing": (lambda t, c: ["-r", t / "gone.pth"], ["gone.pth does not exist", "-r"]),
    "resume-json-file": (_resume_file(b'{"name": "Mnist_LeNet"}'), NOT_A_CHECKPOINT),
    "resume-random-bytes": (_resume_file(b"\x00" + random.Random(0).randbytes(4095)), NOT_A_CHECKPOINT),
    "resume-weights-only-dict": (_resume_plain_dict, ["weights.pth is not a checkpoint of this template",
                                                      "lacks state_dict, config or epoch"]),
    "resume-truncated": (_resume_truncated, ["model_latest.pth is truncated or corrupt", "resume from another"]),
    "resume-other-arch": (_resume_other_arch, ["made for another architecture", "missing conv1.bias",
                                               "unexpected head.weight", "shape differs: conv1.weight"]),
    "data-no-mnist-files": (_no_mnist_files, ["MNIST files missing in", "empty_data", "all four", "download is off",
                                              "link a folder holding them to"]),
    "data-one-file-missing": (_partial_mnist_files, ["MNIST files missing in", "partial", "t10k-labels-idx1-ubyte"]),
}
