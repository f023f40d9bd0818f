"""Shared by the export tests: checkpoints to export, export.py run in this process, and a fresh Python process
without this project's code that loads an exported model."""
import os
import subprocess
import sys

import torch

import data_loader.data_loaders as module_data
import export
import model.model as module_arch
from utils.export.sidecar import read_sidecar

# Loads an exported model with torch (or onnxruntime) alone: -I leaves out PYTHONPATH, user site and the
# current folder; the test split's batches come in as a tensor file, the predicted classes go out as one.
FRESH_LOADER = """
import sys
from importlib.util import find_spec
import torch
artifact, inputs, out = sys.argv[1:]
assert find_spec("parse_config") is None and find_spec("export") is None, "the project's code is importable"
batches = torch.load(inputs)
if artifact.endswith(".pt2"):
    run = torch.export.load(artifact).module()
else:
    import onnxruntime
    session = onnxruntime.InferenceSession(artifact, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    run = lambda x: torch.from_numpy(session.run(None, {name: x.numpy()})[0])
torch.save([run(x) for x in batches], out)
"""


def save_checkpoint(folder, model, config, epoch=1):
    """A checkpoint as train.py writes its essentials (state_dict, config, epoch) in a run folder of its own."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model_best.pth"
    torch.save({"state_dict": model.state_dict(), "config": config, "epoch": epoch}, path)
    return path


def checkpoint_model(path):
    """The eval-mode model of a checkpoint, built plainly from its config."""
    checkpoint = torch.load(path, weights_only=True)
    arch = checkpoint["config"]["arch"]
    model = getattr(module_arch, arch["type"])(**arch.get("args", {}))
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval()


def add_model(monkeypatch, cls):
    """Make a test's model class nameable in arch.type, as if defined in model/model.py."""
    cls.__module__ = module_arch.__name__
    monkeypatch.setattr(module_arch, cls.__name__, cls, raising=False)


def export_in_process(*argv):
    """export.py's main in this process (a UserError propagates); returns the exported file's path."""
    config, fmt, out, tolerance = export.parse_args([str(a) for a in argv])
    export.main(config, fmt, out, tolerance)
    return out


def split_batches(artifact):
    """The test split's input batches, from the run config saved beside the exported model."""
    config = read_sidecar(artifact)["config"]
    args = {**config["data_loader"]["args"], "shuffle": False, "validation_split": 0.0, "training": False}
    loader = getattr(module_data, config["data_loader"]["type"])(**args).evaluation_loader()
    return [data for data, _ in loader]


def outputs_in_fresh_process(artifact, batches, tmp_path):
    """The exported model's outputs on `batches`, computed by a Python process that has only torch and
    onnxruntime: no project folder on its path, started in an empty folder."""
    fresh = tmp_path / "fresh"
    fresh.mkdir(exist_ok=True)
    torch.save(batches, fresh / "inputs.pt")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-I", "-c", FRESH_LOADER, str(artifact), "inputs.pt", "outputs.pt"],
                          cwd=fresh, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return torch.load(fresh / "outputs.pt")
