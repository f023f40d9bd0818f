"""One training step by hand: the loss is a finite number and the optimizer changes the model's weights."""
import torch

from .parts import attempt, build, first_batch, forward, loader_and_model, loss_of, name_of


def test_one_training_batch_changes_the_weights(small_config):
    parser, loader, model = loader_and_model(small_config)
    data, target = first_batch(loader, name_of(parser, "data_loader"))
    optimizer = build(parser, "optimizer", torch.optim, model.parameters())
    before = {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}
    assert before, f"{name_of(parser, 'arch')}: has no trainable parameters"

    model.train()
    loss = loss_of(parser, forward(model, data, name_of(parser, "arch")), target)
    optimizer.zero_grad()
    attempt(name_of(parser, "arch"), "backward from the loss", loss.backward)
    attempt(name_of(parser, "optimizer"), "one step", optimizer.step)

    changed = [name for name, p in model.named_parameters() if name in before and not torch.equal(p, before[name])]
    assert changed, (f"{name_of(parser, 'arch')}: no weight changed after one optimizer step (loss {loss.item():.4g}); "
                     "does forward use the model's layers, and does the loss depend on the output?")
