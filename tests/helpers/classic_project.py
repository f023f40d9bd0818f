"""The classic-style user files that tests/test_classic_compat.py and test_classic_resume.py put in a project
copy (written for these tests, in the classic template's shape), and the classic config that names them."""

BATCH, N_TRAIN, N_VALID = 32, 540, 60  # 600 synthetic samples, validation_split 0.1

TRAINER = '''
import numpy as np
import torch
from base import BaseTrainer
from utils import inf_loop, MetricTracker


class Trainer(BaseTrainer):
    def __init__(self, model, criterion, metric_ftns, optimizer, config, device,
                 data_loader, valid_data_loader=None, lr_scheduler=None, len_epoch=None):
        super().__init__(model, criterion, metric_ftns, optimizer, config)
        self.device = device
        self.data_loader = data_loader
        self.len_epoch = len(self.data_loader) if len_epoch is None else len_epoch
        if len_epoch is not None:
            self.data_loader = inf_loop(data_loader)
        self.valid_data_loader = valid_data_loader
        self.lr_scheduler = lr_scheduler
        self.log_step = int(np.sqrt(data_loader.batch_size))
        names = [m.__name__ for m in self.metric_ftns]
        self.train_metrics = MetricTracker("loss", *names, writer=self.writer)
        self.valid_metrics = MetricTracker("loss", *names, writer=self.writer)
        self.logger.info(f"classic batch_size={data_loader.batch_size} sampler={len(data_loader.sampler)} "
                         f"valid_batch_size={valid_data_loader.batch_size} log_step={self.log_step}")

    def _train_epoch(self, epoch):
        self.model.train()
        self.train_metrics.reset()
        for batch_idx, (data, target) in enumerate(self.data_loader):
            data, target = data.to(self.device), target.to(self.device)
            self.optimizer.zero_grad()
            output = self.model(data)
            loss = self.criterion(output, target)
            loss.backward()
            self.optimizer.step()
            self.writer.set_step((epoch - 1) * self.len_epoch + batch_idx)
            self.train_metrics.update("loss", loss.item())
            for met in self.metric_ftns:
                self.train_metrics.update(met.__name__, met(output, target))
            if batch_idx % self.log_step == 0:
                seen = batch_idx * self.data_loader.batch_size
                self.logger.debug(f"Train Epoch: {epoch} [{seen}/{self.data_loader.n_samples}]")
            if batch_idx + 1 == self.len_epoch:
                break
        log = self.train_metrics.result()
        log.update({"val_" + k: v for k, v in self._valid_epoch(epoch).items()})
        if self.lr_scheduler is not None:
            self.lr_scheduler.step()
        return log

    def _valid_epoch(self, epoch):
        self.model.eval()
        self.valid_metrics.reset()
        with torch.no_grad():
            for batch_idx, (data, target) in enumerate(self.valid_data_loader):
                output = self.model(data.to(self.device))
                loss = self.criterion(output, target.to(self.device))
                self.writer.set_step((epoch - 1) * len(self.valid_data_loader) + batch_idx, "valid")
                self.valid_metrics.update("loss", loss.item())
        for name, p in self.model.named_parameters():
            self.writer.add_histogram(name, p, bins="auto")
        return self.valid_metrics.result()
'''

DATA_LOADERS = '''
from torch.utils.data import DataLoader
from torchvision import datasets, transforms
from base import BaseDataLoader


class ClassicMnistLoader(BaseDataLoader):
    def __init__(self, data_dir, batch_size, shuffle=True, validation_split=0.0, num_workers=1, training=True):
        trsfm = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
        self.dataset = datasets.MNIST(data_dir, train=training, download=False, transform=trsfm)
        super().__init__(self.dataset, batch_size, shuffle, validation_split, num_workers)

    def split_validation(self):
        return DataLoader(sampler=self.valid_sampler, **self.init_kwargs)
'''

MODEL = '''
import torch.nn as nn
import torch.nn.functional as F
from base import BaseModel


class TinyNet(BaseModel):
    def __init__(self, num_classes=10):
        super().__init__()
        self.fc = nn.Linear(784, num_classes)

    def forward(self, x):
        return F.log_softmax(self.fc(x.flatten(1)), dim=1)
'''

LOSS = '''
import torch.nn as nn


class WeightedNLL(nn.NLLLoss):
    def __init__(self, scale=1.0):
        super().__init__()
        self.scale = scale

    def forward(self, output, target):
        return self.scale * super().forward(output, target)
'''

METRIC = '''
import torch


def accuracy(output, target):
    with torch.no_grad():
        return torch.sum(torch.argmax(output, dim=1) == target).item() / len(target)
'''

TRAIN = '''
import argparse
import collections
import torch
import data_loader.data_loaders as module_data
import model.loss as module_loss
import model.metric as module_metric
import model.model as module_arch
from parse_config import ConfigParser
from trainer import Trainer
from utils import prepare_device


def main(config):
    logger = config.get_logger("train")
    data_loader = config.init_obj("train_data_loader", module_data)
    valid_data_loader = data_loader.split_validation()
    model = config.init_obj("arch", module_arch)
    logger.info(model)
    device, device_ids = prepare_device(config["n_gpu"])
    model = model.to(device)
    criterion = config.init_obj("loss", module_loss)
    metrics = [getattr(module_metric, met) for met in config["metrics"]]
    trainable_params = filter(lambda p: p.requires_grad, model.parameters())
    optimizer = config.init_obj("optimizer", torch.optim, trainable_params)
    lr_scheduler = config.init_obj("lr_scheduler", torch.optim.lr_scheduler, optimizer)
    trainer = Trainer(model, criterion, metrics, optimizer, config=config, device=device,
                      data_loader=data_loader, valid_data_loader=valid_data_loader, lr_scheduler=lr_scheduler)
    trainer.train()


if __name__ == "__main__":
    args = argparse.ArgumentParser(description="PyTorch Template")
    args.add_argument("-c", "--config", default=None, type=str)
    args.add_argument("-r", "--resume", default=None, type=str)
    args.add_argument("-d", "--device", default=None, type=str)
    CustomArgs = collections.namedtuple("CustomArgs", "flags type target")
    options = [CustomArgs(["--lr", "--learning_rate"], type=float, target="optimizer;args;lr"),
               CustomArgs(["--bs", "--batch_size"], type=int, target="train_data_loader;args;batch_size")]
    main(ConfigParser.from_args(args, options))
'''

TEST = '''
import argparse
import json
import torch
import data_loader.data_loaders as module_data
import model.loss as module_loss
import model.metric as module_metric
import model.model as module_arch
from parse_config import ConfigParser


def main(config):
    args = config["train_data_loader"]["args"]
    data_loader = getattr(module_data, config["train_data_loader"]["type"])(
        args["data_dir"], batch_size=50, shuffle=False, validation_split=0.0, training=False, num_workers=0)
    model = config.init_obj("arch", module_arch)
    model.load_state_dict(torch.load(config.resume)["state_dict"])
    model.eval()
    loss_fn = config.init_obj("loss", module_loss)
    total_loss, correct = 0.0, 0.0
    with torch.no_grad():
        for data, target in data_loader:
            output = model(data)
            total_loss += loss_fn(output, target).item() * data.shape[0]
            correct += module_metric.accuracy(output, target) * data.shape[0]
    n_samples = len(data_loader.sampler)
    print("RESULT " + json.dumps({"loss": total_loss / n_samples, "accuracy": correct / n_samples,
                                  "n_samples": n_samples}))


if __name__ == "__main__":
    args = argparse.ArgumentParser(description="PyTorch Template")
    args.add_argument("-c", "--config", default=None, type=str)
    args.add_argument("-r", "--resume", default=None, type=str)
    args.add_argument("-d", "--device", default=None, type=str)
    main(ConfigParser.from_args(args))
'''

USER_FILES = {"trainer/trainer.py": TRAINER, "data_loader/data_loaders.py": DATA_LOADERS,
              "model/model.py": MODEL, "model/loss.py": LOSS, "model/metric.py": METRIC,
              "train.py": TRAIN, "test.py": TEST}


def classic_config(data_dir, save_dir, epochs=2):
    """The classic's config shape, with the project's own loader section and a loss built by init_obj."""
    return {
        "name": "Classic", "n_gpu": 0,
        "arch": {"type": "TinyNet", "args": {}},
        "train_data_loader": {"type": "ClassicMnistLoader", "args": {
            "data_dir": str(data_dir), "batch_size": BATCH, "shuffle": True, "validation_split": 0.1,
            "num_workers": 0}},
        "optimizer": {"type": "SGD", "args": {"lr": 0.05, "momentum": 0.9}},
        "loss": {"type": "WeightedNLL", "args": {"scale": 1.0}},
        "metrics": ["accuracy"],
        "lr_scheduler": {"type": "StepLR", "args": {"step_size": 1, "gamma": 0.5}},
        "trainer": {"epochs": epochs, "save_dir": str(save_dir), "save_period": 1, "verbosity": 2,
                    "monitor": "min val_loss", "early_stop": 10, "tensorboard": True},
    }
