"""A new user's own data: the example of docs/customizing.md ("Your own dataset, fast"), run as written on
generated images, and the one-line errors of a first mismatch (model vs batch, top_k_acc vs classes)."""
import json

import pytest
import torch
from torch.utils.data import TensorDataset

import data_loader.data_loaders as module_data
import test as test_script
import train
from base import BaseDataLoader
from model.loss import nll_loss
from model.metric import top_k_acc
from model.model import MnistModel
from tests.helpers.cli import run_cli
from tests.helpers.configs import write_config
from tests.helpers.errors import check_refused
from tests.helpers.own_data import example_config, write_images
from tests.helpers.snapshots import snapshot_bytes_and_mtimes
from trainer.evaluation import evaluate
from utils.errors import UserError
from utils.model_input import check_labels, forward


def test_docs_example_trains_validates_and_tests(tmp_path, example_loader, one_thread):
    data_dir = write_images(tmp_path / "images")
    config = train.parse_args(["-c", str(write_config(tmp_path, example_config(tmp_path, data_dir)))])
    trainer = train.build_trainer(config)
    assert trainer.data_loader.seed == config["seed"] == 123  # the run's seed chooses the split
    first, again = (torch.cat([x for x, _ in trainer.valid_data_loader]) for _ in range(2))
    assert torch.equal(first, again), "validation samples are augmented at random"
    trainer.train()

    history = (config.save_dir / "metrics.csv").read_text().splitlines()
    assert len(history) == 3 and "val_loss" in history[0].split(","), history
    test_script.main(test_script.parse_args(["-r", str(config.save_dir / "model_best.pth")]))
    result = json.loads((config.save_dir / "model_best.test.json").read_text())
    assert result["n_samples"] == 5  # test.csv, not the 18 training images


def test_model_that_does_not_fit_the_batches_is_one_line(tmp_path, example_loader, monkeypatch, capsys):
    config = example_config(tmp_path, write_images(tmp_path / "images"))
    config["arch"] = {"type": "MnistModel", "args": {}}  # 1-channel LeNet, fed 3-channel 224-px batches
    argv = ["-c", str(write_config(tmp_path, config))]
    before = snapshot_bytes_and_mtimes(tmp_path)
    result = run_cli("train", argv, monkeypatch, capsys)
    # one line, and no run folder left behind: the run never saved a checkpoint
    check_refused(result, ["model MnistModel cannot take a batch of shape (4, 3, 224, 224)",
                                  "expected input[4, 3, 224, 224] to have 1 channels", "arch.args"], before, tmp_path)


def test_a_requeued_run_keeps_its_folder(tmp_path, example_loader, monkeypatch, capsys):
    """--run_id: a run killed before its first checkpoint left its folder (config.json, its seed); a start
    that then fails on a user error did not make that folder, so it leaves it as it was."""
    config = example_config(tmp_path, write_images(tmp_path / "images"))
    config["arch"] = {"type": "MnistModel", "args": {}}
    run = tmp_path / "saved" / "models" / config["name"] / "job1"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps(config))
    result = run_cli("train", ["-c", str(write_config(tmp_path, config)), "--run_id", "job1"], monkeypatch, capsys)
    assert result.returncode == 2 and "model MnistModel cannot take a batch" in result.stderr
    assert json.loads((run / "config.json").read_text()) == config


def test_top_k_acc_with_fewer_classes_than_k_is_one_line(tmp_path, example_loader, monkeypatch, capsys):
    with pytest.raises(UserError, match=r"top_k_acc needs at least k=3 classes, but the model outputs 2; "
                                        r"drop top_k_acc from \"metrics\" or lower its k"):
        top_k_acc(torch.zeros(4, 2), torch.zeros(4, dtype=torch.long))
    config = example_config(tmp_path, write_images(tmp_path / "images", n_classes=2))
    config["arch"]["args"]["num_classes"] = 2
    argv = ["-c", str(write_config(tmp_path, config))]
    before = snapshot_bytes_and_mtimes(tmp_path)
    result = run_cli("train", argv, monkeypatch, capsys)
    check_refused(result, ["metric top_k_acc needs at least k=3 classes", "outputs 2"], before, tmp_path)


def test_test_py_names_a_model_that_does_not_fit(tmp_path, example_loader):
    loader = module_data.CsvDataLoader(write_images(tmp_path / "images"), 4, validation_split=0.0, training=False)
    with pytest.raises(UserError, match=r"model MnistModel cannot take a batch of shape \(4, 3, 224, 224\)"):
        test_script.evaluate(MnistModel(), loader.evaluation_loader(), nll_loss, [], torch.device("cpu"))


def test_valid_dataset_must_hold_the_same_samples():
    with pytest.raises(UserError, match="valid_dataset holds 9 samples, dataset 10"):
        BaseDataLoader(TensorDataset(torch.zeros(10)), 2, False, 0.2, 0, valid_dataset=TensorDataset(torch.zeros(9)))


def test_only_a_first_batch_that_the_model_cannot_take_is_a_user_error():
    class FailingWrapper(torch.nn.DataParallel):  # as torch.compile when its compiler fails
        def forward(self, *inputs):
            raise RuntimeError("the compiler failed")

    rgb, grey = torch.zeros(2, 3, 28, 28), torch.zeros(2, 1, 28, 28)
    with pytest.raises(UserError, match=r"model MnistModel .* \(2, 3, 28, 28\): Given groups=1"):
        forward(torch.nn.DataParallel(MnistModel()), rgb, first_batch=True)  # torch's message, not the wrapper's
    with pytest.raises(RuntimeError, match="the compiler failed"):
        forward(FailingWrapper(MnistModel()), grey, first_batch=True)
    with pytest.raises(RuntimeError, match="Given groups=1"):  # later batches keep their traceback
        forward(MnistModel(), rgb, first_batch=False)


def test_labels_the_model_has_no_output_for_are_one_line_in_evaluation_too():
    model = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.LogSoftmax(dim=1)).eval()
    labels = torch.tensor([6, 0, 1, 2, 3, 4, 0, 1])  # label 6 in the first batch
    loader = torch.utils.data.DataLoader(TensorDataset(torch.randn(8, 4), labels), batch_size=4)
    with pytest.raises(UserError, match=r"^the data holds label 6, but the model outputs 5 classes"):
        evaluate(model, loader, nll_loss, [], torch.device("cpu"))
    ignored = torch.tensor([0, -100, 4, 1])  # nll_loss's ignore_index is no class
    check_labels(model(torch.randn(4, 4)), ignored)
