"""The parts config.json names, built one at a time the way train.py builds them; a part that fails says which
part of this project it is and what it was doing, so the fix is in the right file."""
import math

import pytest
import torch

import data_loader.data_loaders as module_data
import model.loss as module_loss
import model.metric as module_metric
import model.model as module_arch
from parse_config import ConfigParser
from utils.lookup import find_by_name


def attempt(part, doing, call):
    """`call()`; an exception fails the test with one line: the config's part, what it was doing, and the error."""
    try:
        return call()
    except Exception as err:
        error = err
    first_line = next((line for line in str(error).splitlines() if line.strip()), "")
    # raised outside the except block: the report is this line, not a chain of tracebacks
    pytest.fail(f"{part}: {doing} failed: {type(error).__name__}: {first_line}", pytrace=False)


def name_of(config, section):
    return f"{section} {config[section]['type']}"


def shape_of(value):
    return tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__


def build(parser, section, module, *args):
    return attempt(name_of(parser, section), f"building with args {parser[section].get('args', {})}",
                   lambda: parser.init_obj(section, module, *args))


def loader_and_model(config):
    """(parser, data loader, model) built from the config dict (no run folder is made)."""
    parser = attempt("config.json", "reading", lambda: ConfigParser(config))
    return parser, build(parser, "data_loader", module_data), build(parser, "arch", module_arch)


def first_batch(loader, part):
    """The first (inputs, target) pair the loader gives, transformed into model inputs."""
    batch = attempt(part, "reading the first batch", lambda: next(iter(loader)))
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        pytest.fail(f"{part}: a batch must be (inputs, target); got {type(batch).__name__}", pytrace=False)
    return batch


def forward(model, data, part):
    return attempt(part, f"forward on a batch of shape {shape_of(data)}", lambda: model(data))


def loss_of(parser, output, target):
    """The configured loss on the model's output: a finite 0-d tensor."""
    section = parser["loss"]
    part = f"loss {section if isinstance(section, str) else section['type']}"
    criterion = attempt(part, "building", lambda: parser.init_named("loss", module_loss))
    loss = attempt(part, f"on output of shape {shape_of(output)} and target of shape {shape_of(target)}",
                   lambda: criterion(output, target))
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
        metric = attempt(f"metric {name}", "finding it in model/metric.py",
                         lambda name=name: find_by_name(module_metric, name, "metric"))
        values[name] = attempt(f"metric {name}", f"on output of shape {shape_of(output)} and target of shape "
                               f"{shape_of(target)}", lambda metric=metric: float(metric(output, target)))
        if not math.isfinite(values[name]):
            pytest.fail(f"metric {name}: is {values[name]} on the first batch", pytrace=False)
    return values
