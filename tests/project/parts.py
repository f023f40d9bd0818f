"""The parts config.json names, built one at a time the way train.py builds them; a part that fails says which
part of this project it is and what it was given, so the fix is in the right file."""
import math

import pytest
import torch

import data_loader.data_loaders as module_data
import model.loss as module_loss
import model.metric as module_metric
import model.model as module_arch
from parse_config import ConfigParser
from utils.lookup import find_by_name


def fail(part, doing, err):
    """Fail the test with one line: the config's part, what it was doing, and the error's first line."""
    first_line = next((line for line in str(err).splitlines() if line.strip()), "")
    pytest.fail(f"{part}: {doing} failed: {type(err).__name__}: {first_line}", pytrace=False)


def name_of(config, section):
    return f"{section} {config[section]['type']}"


def parsed(config):
    """A ConfigParser over the config dict (no run folder is made)."""
    try:
        return ConfigParser(config)
    except Exception as err:
        fail("config.json", "reading", err)


def build(parser, section, module, *args):
    try:
        return parser.init_obj(section, module, *args)
    except Exception as err:
        fail(name_of(parser, section), f"building with args {parser[section].get('args', {})}", err)


def first_batch(loader, part):
    """The first (inputs, target) pair the loader gives, transformed into model inputs."""
    try:
        batch = next(iter(loader))
    except Exception as err:
        fail(part, "reading the first batch", err)
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        pytest.fail(f"{part}: a batch must be (inputs, target); got {type(batch).__name__}", pytrace=False)
    return batch


def shape_of(value):
    return tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__


def forward(model, data, part):
    try:
        return model(data)
    except Exception as err:
        fail(part, f"forward on a batch of shape {shape_of(data)}", err)


def loss_of(parser, output, target):
    """The configured loss on the model's output; it must be a finite number that gradients can flow from."""
    criterion = parser.init_named("loss", module_loss)
    part = f"loss {parser['loss'] if isinstance(parser['loss'], str) else parser['loss']['type']}"
    try:
        loss = criterion(output, target)
    except Exception as err:
        fail(part, f"on output of shape {shape_of(output)} and target of shape {shape_of(target)}", err)
    if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
        pytest.fail(f"{part}: must return a 0-d tensor, got {shape_of(loss)}", pytrace=False)
    if not math.isfinite(loss.item()):
        pytest.fail(f"{part}: is {loss.item()} on the first batch; check the model's output and the labels",
                    pytrace=False)
    return loss


def metric_values(parser, output, target):
    """{name: value} of every configured metric on the output; each must be a finite number."""
    values = {}
    for name in parser["metrics"]:
        try:
            metric = find_by_name(module_metric, name, "metric")
            values[name] = float(metric(output, target))
        except Exception as err:
            fail(f"metric {name}", f"on output of shape {shape_of(output)} and target of shape {shape_of(target)}",
                 err)
        if not math.isfinite(values[name]):
            pytest.fail(f"metric {name}: is {values[name]} on the first batch", pytrace=False)
    return values


def loader_and_model(config):
    """(parser, data loader, model) built from the config dict, each failure naming its part."""
    parser = parsed(config)
    loader = build(parser, "data_loader", module_data)
    model = build(parser, "arch", module_arch)
    return parser, loader, model
