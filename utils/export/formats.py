"""The two formats of an exported model: a torch.export program (.pt2, needs only torch) and ONNX (.onnx, for
ONNX Runtime and other runtimes). Each turns a program into bytes and bytes (or a file) back into a callable."""
import importlib
import io
import warnings
from pathlib import Path

import torch

from utils.errors import UserError
from utils.export.program import quiet_torch

ONNX_PACKAGES = ("onnx", "onnxscript", "onnxruntime")  # export.py: all three (it runs the export to check it)
OUTPUT_NAME = "output"


def missing_packages(names):
    """The packages of `names` that do not import here."""
    missing = []
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    return missing


class Pt2:
    """torch.export.save's archive: the graph and its weights, loaded by torch.export.load without the model's code."""

    name, suffix = "pt2", ".pt2"
    tolerance = (0.0, 0.0)  # (atol, rtol): the reloaded program runs the eager model's kernels, bit for bit

    def check_installed(self, what, to_run=False):
        pass  # torch is all it needs

    def to_bytes(self, program, example):
        buffer = io.BytesIO()
        with warnings.catch_warnings():
            # channels_last weights (MnistModel) are not stored as one complete tensor per storage, which torch
            # warns about; the reloaded program is checked against the eager model before anything is written
            warnings.filterwarnings("ignore", message="No complete tensor found in the group")
            torch.export.save(program, buffer)
        return buffer.getvalue()

    def load(self, source):
        """`source`: bytes or a path. The program as a module (already in eval mode: its .eval() raises)."""
        source = io.BytesIO(source) if isinstance(source, bytes) else str(source)
        return torch.export.load(source).module()


class Onnx:
    """torch.onnx's dynamo exporter, from the same program; run with ONNX Runtime's CPU provider."""

    name, suffix = "onnx", ".onnx"
    # (atol, rtol): ONNX Runtime's own kernels round differently; on real MNIST after one epoch the largest
    # difference was 9.5e-6, at a log-probability of -22.6 (4e-7 of it): an absolute bound alone would be fragile
    tolerance = (1e-5, 1e-5)

    def check_installed(self, what, to_run=False):
        """`to_run`: only running an .onnx file (test.py), which needs ONNX Runtime alone."""
        missing = missing_packages(("onnxruntime",) if to_run else ONNX_PACKAGES)
        if missing:
            raise UserError(f"{what} needs {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} not "
                            "installed; install the export packages: pip install -r requirements-export.txt")

    def to_bytes(self, program, example):
        onnx_program = torch.onnx.export(program, (example,), dynamo=True, verbose=False,
                                         input_names=list(program.graph_signature.user_inputs),
                                         output_names=[OUTPUT_NAME])
        return onnx_program.model_proto.SerializeToString()

    def load(self, source):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()  # the threads this process was given, not all cores
        source = source if isinstance(source, bytes) else str(source)
        return OnnxModule(onnxruntime.InferenceSession(source, options, providers=["CPUExecutionProvider"]))


class OnnxModule(torch.nn.Module):
    """An ONNX Runtime session called like the model it came from: CPU tensors in, tensors out."""

    def __init__(self, session):
        super().__init__()
        self.session = session
        self.input_names = [node.name for node in session.get_inputs()]

    def forward(self, *inputs):
        feeds = {name: x.detach().cpu().numpy() for name, x in zip(self.input_names, inputs, strict=True)}
        outputs = [torch.from_numpy(array) for array in self.session.run(None, feeds)]
        return outputs[0] if len(outputs) == 1 else tuple(outputs)


FORMATS = {fmt.name: fmt for fmt in (Pt2(), Onnx())}


def format_of(path):
    """The format of an exported model's file, by its suffix; None for anything else (a checkpoint)."""
    return next((fmt for fmt in FORMATS.values() if Path(path).suffix == fmt.suffix), None)


def load_exported(path):
    """The exported model in file `path` (test.py); a file its format cannot read is a UserError."""
    fmt = format_of(path)
    try:
        with quiet_torch():  # torch logs the reason too: the line below says it once
            return fmt.load(path)
    except Exception as err:  # a truncated archive or protobuf: each library raises its own error types
        first_line = next((line for line in str(err).splitlines() if line.strip()), "no message")
        raise UserError(f"exported model {path} cannot be read as {fmt.name} ({type(err).__name__}: "
                        f"{first_line.strip()}); export the checkpoint again: python export.py -r CHECKPOINT") from None
