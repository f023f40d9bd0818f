"""Export a checkpoint's model for use without this code, verified: python export.py -r .../model_best.pth"""
import argparse
import io
import json
from itertools import islice
from pathlib import Path

import torch

import data_loader.data_loaders as module_data
import model.model as module_arch
from base.batch_transform import ScaleNormalize
from parse_config import ConfigParser
from runs.entry import run_entry
from runs.files import BEST, CONSOLIDATED
from utils.atomic import atomic_write_all
from utils.checkpoint import load_weights
from utils.config.check import check_sections
from utils.errors import UserError
from utils.export.formats import FORMATS
from utils.export.program import ExportRefused, compare, crop, export_program, input_dims, quiet_torch, takes_any_size
from utils.export.sidecar import file_sha256, sidecar_path

HELD_OUT_BATCHES = 3  # test batches after the example batch that the reloaded export must reproduce


def main(config, fmt, out, tolerance):
    logger = config.get_logger("export")
    if fmt is None:  # --consolidate
        return consolidate(config, out, logger)
    check_sections(config.config, ("arch", "data_loader"))
    weights, which = weights_to_ship(config.run.checkpoint)
    model = config.init_obj("arch", module_arch)
    load_weights(model, weights, config.resume)
    model.eval()  # before export: a program traced in training mode keeps dropout on, and cannot be switched
    loader = test_split(config)
    example, held_out = example_and_held_out(loader)

    any_size = takes_any_size(model, example)
    program = export_program(model, example, any_size)
    with quiet_torch():
        data = fmt.to_bytes(program, example)
    checked = held_out + [held_out[0][:1]] + ([crop(held_out[0])] if any_size else [])  # also 1 sample, a crop
    check = compare(model, fmt.load(data), checked, *tolerance)
    if not check["passed"]:
        raise ExportRefused(f"the exported model's outputs differ from the checkpoint's model by up to "
                            f"{check['max_abs_diff']:.3g} (allowed: {allowed(check)}, over {check['batches_checked']} "
                            "test batches); nothing was written: make forward depend only on its input (see "
                            "docs/export.md)")

    description = describe(config, fmt, out, which, input_dims(program, example), loader, model(example), check)
    atomic_write_all([(out, lambda handle: handle.write(data)),
                      (sidecar_path(out), lambda handle: handle.write(json.dumps(description, indent=4).encode()))])
    logger.info(f"Exported {which} of {config.resume} to {out} ({fmt.name}) and {sidecar_path(out).name}: input "
                f"{description['input']['name']} {shape_text(description['input'])}; on "
                f"{check['batches_checked']} test batches the largest difference from the checkpoint's model "
                f"is {check['max_abs_diff']:.3g} (allowed: {allowed(check)})")


def consolidate(config, out, logger):
    """The checkpoint as one file in the single-file format (a sharded one read whole), for sharing: it loads
    with torch.load(weights_only=True) anywhere, with test.py, -r and export.py alike."""
    buffer = io.BytesIO()
    torch.save(config.run.checkpoint, buffer)
    atomic_write_all([(out, lambda handle: handle.write(buffer.getbuffer()))])
    logger.info(f"Wrote {config.resume} as one file: {out} ({len(buffer.getbuffer()) / 1e6:.2f} MB)")


def allowed(check):
    if check["rtol"] == 0:
        return f"{check['atol']:g}"
    return f"{check['atol']:g} + {check['rtol']:g} x |output|"


def weights_to_ship(checkpoint):
    """(the state dict to export, what it is). The one place that chooses: an averaged model (EMA/SWA) is what
    to ship once checkpoints hold one; until then, the trained weights."""
    return checkpoint["state_dict"], "model weights (no averaged model in this checkpoint)"


def test_split(config):
    """The test split, built from the run's own loader config as test.py builds it."""
    config["data_loader"].setdefault("args", {}).update(shuffle=False, validation_split=0.0, training=False)
    return config.init_obj("data_loader", module_data).evaluation_loader()


def example_and_held_out(loader):
    """(a real batch of 2 samples or more to export from, the test batches after it to check the export on)."""
    batches = [data for data, *_ in islice(loader, 2 * HELD_OUT_BATCHES + 2)]
    if not all(isinstance(data, torch.Tensor) for data in batches):
        raise UserError("export.py exports models that take one tensor; this data loader yields "
                        f"{type(batches[0]).__name__} inputs")
    taken = next((n for n in range(1, len(batches) + 1) if sum(len(b) for b in batches[:n]) >= 2), None)
    if taken is None or taken == len(batches):
        raise UserError(f"the test split has {sum(len(b) for b in batches)} samples in {len(batches)} batches; "
                        "export needs a batch of 2 or more to trace and at least one more batch to check the "
                        "export on: give the test split more samples")
    return torch.cat(batches[:taken]), batches[taken:taken + HELD_OUT_BATCHES]


def describe(config, fmt, out, which, model_input, loader, example_output, check):
    """The JSON written beside the exported model."""
    return {
        "format": fmt.name, "file": out.name, "weights": which, "torch": torch.__version__,
        "checkpoint": {"path": str(config.resume), "sha256": file_sha256(config.resume),
                       "epoch": config.run.checkpoint.get("epoch")},
        "input": model_input,
        "output": {"shape": [None, *example_output.shape[1:]], "meaning": "one row per sample"},
        "num_classes": example_output.shape[1] if example_output.dim() == 2 else None,
        "normalization": normalization(loader),
        "check": check,
        "config": config.config,
    }


def normalization(loader):
    """What turns raw images into the model's inputs, from the loader's batch transform or its dataset (MNIST's
    in-memory set normalises there); None when it is some other transform, which the user has to describe."""
    sources = [getattr(loader, "batch_transform", None), *vars(loader.dataset).values()]
    found = next((s for s in sources if isinstance(s, ScaleNormalize)), None)
    if found is None:
        return None
    return {"formula": "(pixels / scale - mean) / std, per channel", "scale": found.scale,
            "mean": list(found.mean), "std": list(found.std), "layout": "N, C, H, W"}


def shape_text(model_input):
    names = {int(axis): dim["name"] for axis, dim in model_input["dynamic"].items()}
    return "(" + ", ".join(names.get(axis, str(size)) for axis, size in enumerate(model_input["shape"])) + ")"


def consolidated_path(checkpoint, out):
    """--out, or <checkpoint's stem>.consolidated.pth beside it; an existing file is not overwritten."""
    out = Path(out) if out is not None else Path(checkpoint).with_name(f"{Path(checkpoint).stem}{CONSOLIDATED}")
    if out.suffix != ".pth" or out.exists() or not out.parent.is_dir():
        raise UserError(f"--out {out} must be a new .pth file in an existing folder for --consolidate; "
                        "choose another --out")
    return out


def artifact_path(checkpoint, fmt, out):
    """--out, or the checkpoint's name with the format's suffix beside it; a suffix test.py would not know, or a
    folder that does not exist, is refused before any work."""
    out = Path(out) if out is not None else Path(checkpoint).with_suffix(fmt.suffix)
    if out.suffix != fmt.suffix:
        raise UserError(f"--out {out} must end with {fmt.suffix} for --format {fmt.name} (test.py tells formats "
                        "apart by it)")
    if not out.parent.is_dir():
        raise UserError(f"--out {out}: folder {out.parent} does not exist; create it or choose another --out")
    return out


def parse_args(argv=None):
    args = argparse.ArgumentParser(description="Export a checkpoint's model, checked against it on the test split")
    args.add_argument("-r", "--resume", required=True, type=str,
                      help=f"the checkpoint to export, e.g. saved/models/<name>/<run>/{BEST}")
    args.add_argument("-c", "--config", default=None, type=str,
                      help="config keys to change, e.g. data_loader.args.data_dir (default: the checkpoint's)")
    args.add_argument("--format", default="pt2", choices=sorted(FORMATS),
                      help="pt2: torch.export (needs torch only); onnx: ONNX (pip install -r requirements-export.txt)")
    args.add_argument("--out", default=None, help="the file to write (default: the checkpoint's name, .pt2/.onnx)")
    args.add_argument("--consolidate", action="store_true",
                      help="write the checkpoint as one .pth instead (a sharded FSDP checkpoint read whole), for "
                           f"sharing (default --out: <name>{CONSOLIDATED})")
    args.add_argument("--atol", default=None, type=float,
                      help="difference allowed from the checkpoint's model's outputs (default: 0 for pt2, 1e-5 onnx)")
    args.add_argument("--rtol", default=None, type=float,
                      help="plus this fraction of each output's size (default: 0 for pt2, 1e-5 onnx)")
    config = ConfigParser.from_args(args, argv=argv)  # checks every flag, loads the checkpoint
    parsed = args.parse_args(argv)  # the same flags again, for ours (from_args keeps only the config's)
    if parsed.consolidate:
        return config, None, consolidated_path(config.resume, parsed.out), None
    fmt = FORMATS[parsed.format]
    fmt.check_installed(f"--format {fmt.name}")
    given = (parsed.atol, parsed.rtol)
    tolerance = tuple(own if value is None else value for value, own in zip(given, fmt.tolerance, strict=True))
    for flag, value in zip(("--atol", "--rtol"), tolerance, strict=True):
        if not value >= 0:
            raise UserError(f"{flag} {value} must be 0 or more (0 and 0: outputs equal bit for bit)")
    return config, fmt, artifact_path(config.resume, fmt, parsed.out), tolerance


def cli():
    run_entry(lambda: main(*parse_args()))


if __name__ == "__main__":
    cli()
