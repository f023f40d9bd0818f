"""torch.export of an eval-mode model with a dynamic batch (and image size where the model takes any), the
dimensions the program ended up with, and how far a reloaded program's outputs are from the eager model's."""
import contextlib
import io
import logging
import sys

import torch
from torch.export import Dim

from utils.errors import UserError

SPATIAL_NAMES = {1: ("length",), 2: ("height", "width"), 3: ("depth", "height", "width")}


class ExportRefused(UserError):
    """The model cannot be exported, or its export does not compute what it computes: nothing is written."""

    exit_code = 1


def crop(batch):
    """`batch` cut to about 3/4 of its size in every dimension after the channels: real data at another size."""
    return batch[(slice(None), slice(None), *(slice(0, max(1, n * 3 // 4)) for n in batch.shape[2:]))].contiguous()


def takes_any_size(model, example):
    """Whether the eager model takes the example cropped to another image size (ImageClassifier's global pooling
    does; MnistModel's fc1 wants 28x28). Only then are height and width exported as dynamic."""
    if example.dim() < 3:
        return False
    try:
        with torch.no_grad():
            model(crop(example))
    except Exception:  # any refusal means: this model has a fixed input size
        return False
    return True


@contextlib.contextmanager
def quiet_torch():
    """Keep the exporters' own reports off the console: torch's logs and the partial graph it prints to stderr when
    a trace fails, the ONNX optimiser's steps. A refusal is one line, and the error it raises says what matters
    (docs/export.md says how to see torch's full report)."""
    roots = ("torch", "onnx", "onnxscript", "onnx_ir")
    loggers = [logging.getLogger(name) for name in {*roots, *logging.root.manager.loggerDict}
               if name.split(".")[0] in roots]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def export_program(model, example, any_size):
    """torch.export.export of the eval-mode `model` on the real batch `example` (2 samples or more: a batch of 1
    would fix the batch size at 1). The batch is dynamic, or export fails; height and width are left to torch
    (Dim.AUTO) when the model takes any size."""
    dims = {0: Dim("batch", min=1)}
    if any_size:
        dims.update({axis: Dim.AUTO for axis in range(2, example.dim())})
    try:
        with quiet_torch():
            return torch.export.export(model, (example,), dynamic_shapes=(dims,))
    except Exception as err:  # torch's exporter has many error types; each is the model's, not the user's typing
        raise ExportRefused(f"model {type(model).__name__} cannot be exported with a dynamic batch "
                            f"({type(err).__name__}: {first_line(err)}); nothing was written: make forward "
                            "free of Python branches on tensor values and of Python numbers taken from the "
                            "batch size (see docs/export.md)") from None


def first_line(err):
    return next((line.strip() for line in str(err).splitlines() if line.strip()), "no message")


def input_dims(program, example):
    """The program's input: its name, dtype, shape (None where dynamic) and each dynamic dimension's range."""
    name = program.graph_signature.user_inputs[0]
    node = next(n for n in program.graph.nodes if n.op == "placeholder" and n.name == name)
    shape, dynamic = [], {}
    for axis, size in enumerate(node.meta["val"].shape):
        if isinstance(size, int):
            shape.append(size)
            continue
        shape.append(None)
        bounds = program.range_constraints[size.node.expr]
        names = ("batch", "channels", *SPATIAL_NAMES.get(example.dim() - 2, ()))
        dynamic[str(axis)] = {"name": names[axis] if axis < len(names) else f"dim{axis}",
                              "min": _bound(bounds.lower), "max": _bound(bounds.upper)}
    return {"name": name, "dtype": str(example.dtype).removeprefix("torch."), "shape": shape,
            "example_shape": list(example.shape), "dynamic": dynamic}


def _bound(value):
    return int(value) if abs(value) < sys.maxsize else None  # torch's int_oo: no bound


def differences(expected, got, rtol):
    """(max |expected - got|, max of |expected - got| - rtol * |expected|, which atol bounds) over every output;
    NaN where both are NaN counts as equal, elsewhere as infinitely far."""
    expected = expected if isinstance(expected, (tuple, list)) else [expected]
    got = got if isinstance(got, (tuple, list)) else [got]
    if len(expected) != len(got) or any(a.shape != b.shape for a, b in zip(expected, got, strict=True)):
        return float("inf"), float("inf")
    largest, beyond = 0.0, 0.0
    for a, b in zip(expected, got, strict=True):
        diff = (a.double() - b.double()).abs()
        diff = torch.where(a.isnan() & b.isnan(), 0.0, diff.nan_to_num(nan=float("inf")))
        if diff.numel():
            largest = max(largest, float(diff.max()))
            beyond = max(beyond, float((diff - rtol * a.double().abs().nan_to_num(nan=0.0)).max()))
    return largest, beyond


def compare(model, exported, batches, atol, rtol):
    """Run the eager model and the reloaded export on every batch: the check's result for the JSON. `passed`:
    every output within atol + rtol * |eager output| (both 0: bit for bit)."""
    largest, beyond, sizes = 0.0, 0.0, []
    with torch.no_grad():
        for batch in batches:
            diff, over = differences(model(batch), run_exported(exported, batch), rtol)
            largest, beyond = max(largest, diff), max(beyond, over)
            sizes.append(list(batch.shape))
    return {"max_abs_diff": largest, "atol": atol, "rtol": rtol, "passed": beyond <= atol,
            "batches_checked": len(batches), "samples_checked": sum(s[0] for s in sizes), "batch_shapes": sizes}


def run_exported(exported, batch):
    """The reloaded export on a test batch; one it refuses (a size fixed by the trace) refuses the export."""
    try:
        return exported(batch)
    except Exception as err:  # torch's guard failures and ONNX Runtime's errors have no common type
        raise ExportRefused(f"the exported model fails on a test batch of shape {tuple(batch.shape)} that the "
                            f"checkpoint's model takes ({type(err).__name__}: {first_line(err)}); nothing was "
                            "written (see docs/export.md)") from None
