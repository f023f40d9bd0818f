"""Both formats, for the default MNIST run and for the own-dataset example (ImageClassifier, any image size): the
exported model, loaded by a Python process without this project's code, predicts what the checkpoint predicts on
the test split, and test.py on it prints the checkpoint's accuracy. Without the ONNX packages, one line."""
import json
import subprocess
import sys

import pytest
import torch

import test as test_script
from tests.helpers.cli import train_in_process
from tests.helpers.configs import shrink_config, write_config
from tests.helpers.exports import checkpoint_model, export_in_process, outputs_in_fresh_process, split_batches
from tests.helpers.own_data import example_config, write_images
from tests.helpers.paths import REPO
from utils.export.program import crop

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def mnist_checkpoint(tmp_path_factory, synthetic_data_dir):
    tmp_path = tmp_path_factory.mktemp("mnist_run")
    config = train_in_process("-c", write_config(tmp_path, shrink_config(tmp_path, synthetic_data_dir, epochs=1)))
    return config.save_dir / "model_best.pth"


@pytest.fixture
def image_checkpoint(tmp_path, example_loader):
    """model_best.pth of one epoch of docs/customizing.md's example: CsvDataLoader and ImageClassifier."""
    config = example_config(tmp_path, write_images(tmp_path / "images"))
    config["trainer"]["epochs"] = 1
    return train_in_process("-c", write_config(tmp_path, config)).save_dir / "model_best.pth"


def printed_accuracy(path, capfd):
    capfd.readouterr()
    test_script.main(test_script.parse_args(["-r", str(path)]))
    return next(line.strip() for line in capfd.readouterr().out.splitlines() if "accuracy :" in line)


def check_export(checkpoint, fmt, tmp_path, capfd, extra_batches=()):
    if fmt == "onnx":
        pytest.importorskip("onnxruntime")
    capfd.readouterr()
    artifact = export_in_process("-r", checkpoint, "--format", fmt)
    out, err = capfd.readouterr()
    assert err == "" and out.count("\n") == 1, out + err  # one line, not the ONNX exporter's steps
    batches = split_batches(artifact) + [make(split_batches(artifact)[0]) for make in extra_batches]
    model = checkpoint_model(checkpoint)
    with torch.no_grad():
        expected = [model(x) for x in batches]
    got = outputs_in_fresh_process(artifact, batches, tmp_path)
    for want, have in zip(expected, got, strict=True):
        assert torch.equal(have.argmax(1), want.argmax(1))
        assert torch.equal(have, want) if fmt == "pt2" else torch.allclose(have, want, rtol=1e-5, atol=1e-5)
    assert printed_accuracy(artifact, capfd) == printed_accuracy(checkpoint, capfd)
    return json.loads(artifact.with_name(artifact.name + ".json").read_text())


@pytest.mark.parametrize("fmt", ["pt2", "onnx"])
def test_the_default_run_exports(fmt, mnist_checkpoint, tmp_path, capfd, one_thread):
    sidecar = check_export(mnist_checkpoint, fmt, tmp_path, capfd)
    assert sidecar["format"] == fmt and sidecar["input"]["shape"] == [None, 1, 28, 28]


@pytest.mark.parametrize("fmt", ["pt2", "onnx"])
def test_the_own_data_example_exports_with_any_image_size(fmt, image_checkpoint, tmp_path, capfd, one_thread):
    sidecar = check_export(image_checkpoint, fmt, tmp_path, capfd, extra_batches=[crop])  # 168x168 too
    assert sidecar["input"]["shape"] == [None, 3, None, None]
    assert [dim["name"] for dim in sidecar["input"]["dynamic"].values()] == ["batch", "height", "width"]
    assert sidecar["normalization"]["mean"] == [0.485, 0.456, 0.406]  # the docs' batch_transform
    assert sidecar["num_classes"] == 5 and sidecar["check"]["batch_shapes"][-1] == [1, 3, 168, 168]


def test_onnx_without_its_packages_is_one_line(mnist_checkpoint, tmp_path):
    """A package that fails to import, as where it is not installed: a folder on PYTHONPATH shadows it."""
    for name in ("onnxscript", "onnxruntime"):
        (tmp_path / "shadow" / name).mkdir(parents=True)
        (tmp_path / "shadow" / name / "__init__.py").write_text(f"raise ImportError('no {name} here')\n")
    onnx_file = tmp_path / "model.onnx"
    onnx_file.write_bytes(b"")
    (tmp_path / "model.onnx.json").write_text(json.dumps({"config": {"name": "x", "trainer": {"epochs": 1}}}))
    env = {"PYTHONPATH": str(tmp_path / "shadow"), "PYTHONUNBUFFERED": "1"}
    commands = [["export.py", "-r", mnist_checkpoint, "--format", "onnx"], ["test.py", "-r", onnx_file]]
    before = sorted(mnist_checkpoint.parent.iterdir())
    processes = [subprocess.Popen([sys.executable, *map(str, command)], cwd=REPO, env=env, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE) for command in commands]
    results = [(process.wait(timeout=300), process.stderr.read()) for process in processes]
    install = "install the export packages: pip install -r requirements-export.txt\n"
    assert results[0] == (2, f"error: --format onnx needs onnxscript, onnxruntime, which are not installed; {install}")
    assert results[1] == (2, f"error: test.py on model.onnx needs onnxruntime, which is not installed; {install}")
    assert sorted(mnist_checkpoint.parent.iterdir()) == before  # no .onnx written
