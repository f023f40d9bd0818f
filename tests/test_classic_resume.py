"""A classic trainer (its loop never calls set_epoch) resumed with -r sees a new shuffle every epoch
after the resume, the very shuffles of the uninterrupted run, and ends with the same weights.

The classic user files of test_classic_compat run here in this process (a few seconds, not three
subprocesses), put together as the classic train.py does, seed at start included.
"""
import argparse
import types

import pandas as pd
import torch

from parse_config import ConfigParser
from tests.helpers.classic_project import DATA_LOADERS, LOSS, METRIC, MODEL, TRAINER, classic_config
from tests.helpers.configs import write_config
from tests.helpers.runs import run_dirs


def source_module(name, source):
    module = types.ModuleType(name)
    exec(compile(source, f"<classic {name}>", "exec"), module.__dict__)
    return module


CLASSIC_LOADERS = source_module("classic_data_loaders", DATA_LOADERS)
CLASSIC_MODEL = source_module("classic_model", MODEL)
CLASSIC_LOSS = source_module("classic_loss", LOSS)
CLASSIC_METRIC = source_module("classic_metric", METRIC)
CLASSIC_TRAINER = source_module("classic_trainer", TRAINER)


class RecordingLoader(CLASSIC_LOADERS.ClassicMnistLoader):
    """The classic loader, noting the labels of each pass in the order the trainer received them."""

    passes = None  # a list shared by the runs of one test

    def __iter__(self):
        order = []
        self.passes.append(order)
        for data, target in super().__iter__():
            order.extend(target.tolist())
            yield data, target


def classic_train(*argv):
    """The classic train.py's main, in this process."""
    torch.manual_seed(123)  # the classic train.py seeds at import
    args = argparse.ArgumentParser()
    for flags in (("-c", "--config"), ("-r", "--resume"), ("-d", "--device")):
        args.add_argument(*flags, default=None, type=str)
    config = ConfigParser.from_args(args, argv=[str(a) for a in argv])
    data_loader = RecordingLoader(**config["train_data_loader"]["args"])
    model = config.init_obj("arch", CLASSIC_MODEL)
    optimizer = config.init_obj("optimizer", torch.optim, model.parameters())
    trainer = CLASSIC_TRAINER.Trainer(
        model, config.init_obj("loss", CLASSIC_LOSS), [CLASSIC_METRIC.accuracy], optimizer, config=config,
        device=torch.device("cpu"), data_loader=data_loader, valid_data_loader=data_loader.split_validation(),
        lr_scheduler=config.init_obj("lr_scheduler", torch.optim.lr_scheduler, optimizer))
    trainer.train()


def test_a_resumed_classic_trainer_shuffles_each_epoch_as_the_uninterrupted_run(
        tmp_path, synthetic_data_dir, one_thread, monkeypatch):
    passes = {"straight": [], "resumed": []}
    for name, epochs in (("straight", 3), ("resumed", 1)):
        config = classic_config(synthetic_data_dir, tmp_path / name, epochs=epochs)
        config["trainer"]["tensorboard"] = False
        monkeypatch.setattr(RecordingLoader, "passes", passes[name])
        classic_train("-c", write_config(tmp_path, config, f"{name}.json"))
    (straight,), (resumed,) = run_dirs(tmp_path / "straight"), run_dirs(tmp_path / "resumed")
    monkeypatch.setattr(RecordingLoader, "passes", passes["resumed"])  # epochs 2 and 3 of the resumed run
    classic_train("-r", resumed / "checkpoint-epoch1.pth", "-o", "trainer.epochs=3")

    assert pd.read_csv(resumed / "metrics.csv")["epoch"].tolist() == [1, 2, 3]
    assert len(passes["resumed"]) == 3 and passes["resumed"][1] != passes["resumed"][2]
    assert passes["resumed"] == passes["straight"]
    weights = [torch.load(run / "model_latest.pth", weights_only=True)["state_dict"] for run in (straight, resumed)]
    assert all(torch.equal(weights[0][key], weights[1][key]) for key in weights[0])
