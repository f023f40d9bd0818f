"""A model that cannot take the data's batches: one line naming both, not a traceback from deep inside torch."""
import torch

from utils.checkpoint import unwrap_model
from utils.errors import UserError


def forward(model, data, first_batch):
    """`model(data)`. On a run's first batch a RuntimeError (conv channels, layer sizes) means the config's
    arch does not fit its data_loader, so it becomes a UserError; later batches are not wrapped, so an error
    in the middle of training keeps its traceback."""
    if not first_batch:
        return model(data)
    try:
        return model(data)
    except torch.OutOfMemoryError:  # a RuntimeError too, but the batch fits the model: too big for the device
        raise
    except RuntimeError as err:
        shape = tuple(data.shape) if isinstance(data, torch.Tensor) else type(data).__name__
        first_line = next((line for line in str(err).splitlines() if line.strip()), type(err).__name__)
        raise UserError(f"model {type(unwrap_model(model)).__name__} cannot take a batch of shape {shape}: "
                        f"{first_line}; make arch.args match the data (see docs/customizing.md)") from None
