"""A dry check that config.json's parts fit together, one part at a time, before any training."""
import torch

from .parts import build, first_batch, forward, loader_and_model, loss_of, metric_values, name_of, shape_of


def test_data_loader_gives_batches_the_model_loss_and_metrics_take(small_config):
    parser, loader, model = loader_and_model(small_config)
    data, target = first_batch(loader, name_of(parser, "data_loader"))
    assert len(target) > 0, f"{name_of(parser, 'data_loader')}: the first batch is empty"

    model.eval()
    with torch.no_grad():
        output = forward(model, data, name_of(parser, "arch"))
    assert isinstance(output, torch.Tensor) and output.shape[0] == len(target), (
        f"{name_of(parser, 'arch')}: gave output of shape {shape_of(output)} for {len(target)} samples; "
        "forward should return one row per sample")
    loss_of(parser, output, target)
    metric_values(parser, output, target)


def test_validation_split_gives_batches(small_config):
    parser, loader, _ = loader_and_model(small_config)
    valid = loader.split_validation() if hasattr(loader, "split_validation") else None
    if valid is not None:  # validation_split: 0 means none, and then only training runs
        data, target = first_batch(valid, f"{name_of(parser, 'data_loader')} (validation split)")
        assert len(target) > 0


def test_optimizer_and_lr_scheduler_take_the_model(small_config):
    parser, _, model = loader_and_model(small_config)
    optimizer = build(parser, "optimizer", torch.optim, model.parameters())
    if parser.get("lr_scheduler"):  # optional: leave it out of the config for a constant learning rate
        build(parser, "lr_scheduler", torch.optim.lr_scheduler, optimizer)
