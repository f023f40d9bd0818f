"""A model that cannot take the data's batches: one line naming both, not a traceback from deep inside torch."""
import torch

from utils.checkpoint import unwrap_model
from utils.errors import UserError


def forward(model, data, first_batch, target=None):
    """`model(data)`. On a run's first batch a RuntimeError (conv channels, layer sizes) means the config's
    arch does not fit its data_loader, so it becomes a UserError, and so do labels the output has no class for
    (check_labels); an error in a later batch keeps its traceback."""
    try:
        output = model(data)
    except RuntimeError as err:
        if not first_batch or isinstance(err, (torch.OutOfMemoryError, getattr(torch, "AcceleratorError", ()))):
            raise  # mid-training, or not the batch's fault (out of memory, a device error)
        plain = unwrap_model(model)
        # through a wrapper, ask the plain model: torch.compile and DataParallel bury torch's own message
        cause = err if plain is model else _eager_error(plain, data)
        if cause is None:  # the plain model takes the batch: the compiler failed, not the data
            raise
        shape = tuple(data.shape) if isinstance(data, torch.Tensor) else type(data).__name__
        first_line = next((line for line in str(cause).splitlines() if line.strip()), type(cause).__name__)
        raise UserError(f"model {type(plain).__name__} cannot take a batch of shape {shape}: {first_line}; "
                        "make arch.args match the data (see docs/customizing.md)") from None
    if first_batch and target is not None:
        check_labels(output, target)
    return output


def _eager_error(model, data):
    """The RuntimeError that `model(data)` raises, or None."""
    try:
        with torch.no_grad():
            model(data)
    except RuntimeError as err:
        return err
    return None


def check_labels(output, target):
    """Class labels the model has no output for are one line, not nll_loss's IndexError
    (or, on a GPU, a device-side assert). Negative labels pass: a loss's ignore_index is one."""
    if output.dim() == 2 and target.dim() == 1 and not target.is_floating_point():
        highest = int(target.max())
        if highest >= output.size(1):
            raise UserError(f"the data holds label {highest}, but the model outputs {output.size(1)} classes "
                            "(labels 0 to N-1); set arch.args.num_classes to the number of classes")
