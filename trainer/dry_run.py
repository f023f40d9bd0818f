"""--dry_run: one training batch and one validation batch through the code that trains, to check that a new model,
loss and data loader fit together in seconds; nothing is saved and no run folder is made."""
import torch

from trainer.evaluation import evaluate, to_device
from trainer.fixed_batches import FixedBatches


def dry_run(trainer):
    """Forward, backward and an optimizer step on one training batch, then one validation batch: the line
    --dry_run prints. A misfit model or labels fail with training's own first-batch line (a UserError)."""
    if trainer.run.saved_checkpoint is not None:  # -r: its weights must load into this model too
        trainer._restore(trainer.run.saved_checkpoint)
    trainer.check_before_training()
    trainer.global_step = 0  # the first-batch checks apply, as on a run's first batch
    trainer.model.train()
    data, target = next(trainer.stream.take(1))
    data, target = to_device(data, target, trainer.device, trainer.train_transform)
    output, loss = trainer._run_batch(data, target)
    line = f"dry run: {type(trainer.raw_model).__name__} takes a batch {_shape(data)} -> {_shape(output)}, " \
           f"training loss {loss.item():.4f}"
    if trainer.do_validation:
        trainer.eval_model.eval()
        valid = evaluate(trainer.eval_model, FixedBatches(trainer.valid_data_loader, 1), trainer.criterion,
                         trainer.metric_ftns, trainer.device, autocast=trainer.autocast)
        line += f", validation loss {valid.avg('loss'):.4f}"
    return line + "; the parts fit. Nothing was saved."


def _shape(value):
    return tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
