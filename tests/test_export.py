"""export.py on the default MNIST run: a .pt2 with a dynamic batch, checked against the checkpoint, and its JSON;
test.py on it gives the checkpoint's results. Refusals: one line, nothing written."""
import hashlib
import json

import pytest
import torch
import torch.nn.functional as F

import test as test_script
from tests.helpers.cli import run_cli, train_in_process
from tests.helpers.configs import shrink_config, write_config
from tests.helpers.exports import (
    add_model,
    checkpoint_model,
    export_in_process,
    save_checkpoint,
    split_batches,
)
from tests.helpers.snapshots import snapshot_bytes_and_mtimes
from utils.export.program import ExportRefused, compare


@pytest.fixture(scope="module")
def mnist_checkpoint(tmp_path_factory, synthetic_data_dir):
    """model_best.pth of a one-epoch run of the default config on synthetic MNIST."""
    tmp_path = tmp_path_factory.mktemp("mnist_run")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    config = train_in_process("-c", write_config(tmp_path, shrink_config(tmp_path, synthetic_data_dir, epochs=1)))
    torch.set_num_threads(threads)
    return config.save_dir / "model_best.pth"


def test_pt2_of_the_default_run_is_the_checkpoint_with_a_dynamic_batch(mnist_checkpoint, one_thread, capfd,
                                                                        recwarn):
    capfd.readouterr()
    artifact = export_in_process("-r", mnist_checkpoint)
    out, err = capfd.readouterr()
    assert err == "" and out.count("\n") == 1 and "largest difference from the checkpoint's model is 0 " in out
    # torch's warning about channels_last weights is silenced: the reload is checked instead
    assert not [w for w in recwarn if "No complete tensor" in str(w.message)]
    assert artifact == mnist_checkpoint.with_suffix(".pt2")
    sidecar = json.loads(artifact.with_name("model_best.pt2.json").read_text())
    assert sidecar["checkpoint"]["sha256"] == hashlib.sha256(mnist_checkpoint.read_bytes()).hexdigest()
    assert sidecar["weights"] == "model weights (no averaged model in this checkpoint)"
    # MnistModel's fc1 wants 28x28: only the batch is dynamic, from 1 sample up
    assert sidecar["input"]["shape"] == [None, 1, 28, 28]
    assert sidecar["input"]["dynamic"] == {"0": {"name": "batch", "min": 1, "max": None}}
    assert sidecar["input"]["example_shape"] == [64, 1, 28, 28]  # a real batch of the test split
    assert sidecar["normalization"]["mean"] == [0.1307] and sidecar["normalization"]["std"] == [0.3081]
    assert sidecar["num_classes"] == 10
    check = sidecar["check"]
    assert check["max_abs_diff"] == 0.0 and check["atol"] == check["rtol"] == 0.0 and check["passed"]
    assert [shape[0] for shape in check["batch_shapes"]] == [64, 64, 8, 1]  # held-out batches and one sample

    batches = split_batches(artifact)
    exported, model = torch.export.load(str(artifact)).module(), checkpoint_model(mnist_checkpoint)
    with torch.no_grad():
        for x in batches:  # every test batch, the example's too: bit for bit
            assert torch.equal(exported(x), model(x))


def test_test_py_on_the_export_gives_the_checkpoint_results(mnist_checkpoint, one_thread, capfd):
    artifact = mnist_checkpoint.with_suffix(".pt2")
    if not artifact.is_file():
        export_in_process("-r", mnist_checkpoint)
    for path in (mnist_checkpoint, artifact):
        test_script.main(test_script.parse_args(["-r", str(path)]))
    printed = capfd.readouterr().out
    ours = json.loads(artifact.with_name("model_best.pt2.test.json").read_text())
    theirs = json.loads(mnist_checkpoint.with_name("model_best.test.json").read_text())
    assert ours["metrics"] == theirs["metrics"] and ours["n_samples"] == theirs["n_samples"] == 200
    assert printed.count(f"accuracy : {theirs['metrics']['accuracy']:.6f}") == 2  # the same line, twice


# ---- refusals ----------------------------------------------------------------------------------------------


class AlwaysDropout(torch.nn.Module):
    """A model whose forward ignores eval mode: two calls differ, so an export cannot reproduce it."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(784, 10)

    def forward(self, x):
        return F.log_softmax(F.dropout(self.fc(x.flatten(1)), 0.5, training=True), dim=1)


class BatchSizeAsNumber(AlwaysDropout):
    """Takes the batch size as a Python number: the export would fix the batch at the example's size."""

    def forward(self, x):
        return F.log_softmax(self.fc(x.flatten(1)) / float(x.shape[0]), dim=1)


class BranchOnValues(AlwaysDropout):
    """A Python branch on a tensor's value: not exportable (torch cannot trace both ways)."""

    def forward(self, x):
        return F.log_softmax(self.fc(x.flatten(1)) if x.sum() > 0 else -self.fc(x.flatten(1)), dim=1)


def refused(tmp_path, synthetic_data_dir, monkeypatch, capfd, cls, extra=()):
    add_model(monkeypatch, cls)
    config = shrink_config(tmp_path, synthetic_data_dir)
    config["arch"] = {"type": cls.__name__, "args": {}}
    checkpoint = save_checkpoint(tmp_path / "run", cls(), config)
    before = snapshot_bytes_and_mtimes(tmp_path)
    result = run_cli("export", ["-r", checkpoint, *extra], monkeypatch, capfd)
    assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) == 1, result.stderr
    assert snapshot_bytes_and_mtimes(tmp_path) == before, "a refused export left a file behind"
    return result.returncode, result.stderr


def test_an_export_whose_outputs_differ_is_refused(tmp_path, synthetic_data_dir, monkeypatch, capfd, one_thread):
    code, stderr = refused(tmp_path, synthetic_data_dir, monkeypatch, capfd, AlwaysDropout)
    assert code == 1
    assert stderr.startswith("error: the exported model's outputs differ from the checkpoint's model by up to ")
    largest = float(stderr.split("by up to ")[1].split(" ")[0])
    assert largest > 0.01 and "(allowed: 0, over 4 test batches)" in stderr


@pytest.mark.parametrize("cls, why", [(BatchSizeAsNumber, "Constraints violated (batch)"),
                                      (BranchOnValues, "GuardOnDataDependentSymNode")])
def test_a_model_that_cannot_be_exported_is_refused(cls, why, tmp_path, synthetic_data_dir, monkeypatch, capfd,
                                                    one_thread):
    code, stderr = refused(tmp_path, synthetic_data_dir, monkeypatch, capfd, cls)
    assert code == 1
    assert stderr.startswith(f"error: model {cls.__name__} cannot be exported with a dynamic batch")
    assert why in stderr and "nothing was written" in stderr


def test_an_export_that_refuses_a_test_batch_is_refused():
    model = torch.nn.Flatten().eval()
    static = torch.export.export(model, (torch.zeros(4, 2),)).module()  # batch fixed at 4
    batches = [torch.ones(4, 2), torch.ones(3, 2)]
    assert compare(model, static, batches[:1], 0, 0)["max_abs_diff"] == 0.0
    with pytest.raises(ExportRefused, match=r"^the exported model fails on a test batch of shape \(3, 2\) that the "
                                            r"checkpoint's model takes \(AssertionError: Guard failed"):
        compare(model, static, batches, 0, 0)


def test_the_tolerance_is_absolute_plus_relative():
    model, expected = torch.nn.Identity(), torch.tensor([[-20.0, -0.5]])

    def off_by(*deltas):
        return lambda x: x + torch.tensor([deltas])

    check = compare(model, off_by(1.5e-4, 1e-5), [expected], atol=1e-5, rtol=1e-5)  # 1.5e-4 <= 1e-5 + 2e-4
    assert check["passed"] and check["max_abs_diff"] == pytest.approx(1.5e-4, rel=0.01)  # float32 steps
    assert not compare(model, off_by(0, 2e-5), [expected], atol=1e-5, rtol=1e-5)["passed"]  # > 1e-5 + 5e-6
    assert not compare(model, off_by(0, 1e-7), [expected], atol=0, rtol=0)["passed"]  # pt2's default: exact


def test_a_missing_or_corrupt_checkpoint_is_refused(tmp_path, monkeypatch, capfd):
    corrupt = tmp_path / "model_best.pth"
    corrupt.write_bytes(b"PK\x03\x04 not a zip archive")
    before = snapshot_bytes_and_mtimes(tmp_path)
    for path, expected in [(tmp_path / "missing.pth", "does not exist"), (corrupt, "is truncated or corrupt")]:
        code, _, stderr = run_cli("export", ["-r", path], monkeypatch, capfd)
        assert code == 2 and len(stderr.splitlines()) == 1 and expected in stderr, stderr
    assert snapshot_bytes_and_mtimes(tmp_path) == before


def test_an_out_path_test_py_would_not_recognise_is_refused(mnist_checkpoint, monkeypatch, capfd):
    code, _, stderr = run_cli("export", ["-r", mnist_checkpoint, "--format", "pt2", "--out", "model.onnx"],
                              monkeypatch, capfd)
    assert code == 2 and stderr == "error: --out model.onnx must end with .pt2 for --format pt2 (test.py tells " \
                                   "formats apart by it)\n"
    code, _, stderr = run_cli("export", ["-r", mnist_checkpoint, "--rtol", "-1"], monkeypatch, capfd)
    assert code == 2 and stderr == "error: --rtol -1.0 must be 0 or more (0 and 0: outputs equal bit for bit)\n"


def test_train_py_says_an_export_is_no_checkpoint(mnist_checkpoint, monkeypatch, capsys):
    artifact = mnist_checkpoint.with_suffix(".pt2")
    if not artifact.is_file():
        export_in_process("-r", mnist_checkpoint)
    code, _, stderr = run_cli("train", ["-r", artifact], monkeypatch, capsys)
    assert code == 2 and len(stderr.splitlines()) == 1
    assert stderr.startswith(f"error: {artifact} is a model exported by export.py, not a checkpoint; pass the .pth")


def test_test_py_needs_the_json_beside_an_export_and_a_readable_file(mnist_checkpoint, tmp_path, monkeypatch,
                                                                      capsys):
    def run_test_py(path):
        code, _, stderr = run_cli("test", ["-r", path], monkeypatch, capsys)
        assert code == 2 and len(stderr.splitlines()) == 1, stderr
        return stderr

    truncated = tmp_path / "model.pt2"
    truncated.write_bytes(b"PK")
    assert "has no model.pt2.json beside it" in run_test_py(truncated)
    sidecar = mnist_checkpoint.with_suffix(".pt2").with_name("model_best.pt2.json")
    if not sidecar.is_file():
        export_in_process("-r", mnist_checkpoint)
    (tmp_path / "model.pt2.json").write_text(sidecar.read_text())
    assert f"exported model {truncated} cannot be read as pt2" in run_test_py(truncated)
