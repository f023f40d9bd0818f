"""MnistModel, the abstract base classes, the metrics, MetricTracker (pandas 3) and requirements.txt."""
import math
import re

import pandas as pd
import pytest
import torch

from base import BaseModel, BaseTrainer
from model.loss import nll_loss
from model.metric import accuracy, top_k_acc
from model.model import MnistModel
from tests.helpers.paths import REPO
from utils import MetricTracker


# ---- model ------------------------------------------------------------------
def test_model_printout_ends_with_the_trainable_parameter_count():
    text = str(MnistModel())

    assert "Trainable parameters: 21840" in text
    assert text.startswith("MnistModel(")


def test_frozen_parameters_are_not_counted():
    model = MnistModel()
    model.fc2.requires_grad_(False)  # 50 * 10 weights + 10 biases

    assert "Trainable parameters: 21330" in str(model)


def test_model_maps_a_batch_to_log_probabilities():
    output = MnistModel().eval()(torch.zeros(5, 1, 28, 28))

    assert output.shape == (5, 10)
    assert torch.allclose(output.exp().sum(dim=1), torch.ones(5))


def test_base_model_requires_forward():
    class NoForward(BaseModel):
        pass

    with pytest.raises(TypeError, match="forward"):
        BaseModel()
    with pytest.raises(TypeError, match="forward"):
        NoForward()


def test_base_trainer_requires_train_epoch():
    class NoTrainEpoch(BaseTrainer):
        pass

    with pytest.raises(TypeError, match="_train_epoch"):
        NoTrainEpoch(None, None, [], None, None)


# ---- metrics and loss --------------------------------------------------------
OUTPUT = torch.tensor([[0.1, 0.6, 0.2, 0.1],   # ranks: 1 > 2 > 0 = 3
                       [0.7, 0.1, 0.15, 0.05],  # 0 > 2 > 1 > 3
                       [0.2, 0.3, 0.4, 0.1],   # 2 > 1 > 0 > 3
                       [0.25, 0.35, 0.3, 0.1]])  # 1 > 2 > 0 > 3
TARGET = torch.tensor([1, 2, 0, 3])  # top-1 at rank 1, 2, 3, 4


def test_accuracy_on_known_tensors():
    result = accuracy(OUTPUT, TARGET)

    assert isinstance(result, torch.Tensor) and result.dim() == 0  # no .item(): no host sync
    assert result.item() == pytest.approx(0.25)


@pytest.mark.parametrize("k, expected", [(1, 0.25), (2, 0.5), (3, 0.75), (4, 1.0)])
def test_top_k_acc_on_known_tensors(k, expected):
    assert top_k_acc(OUTPUT, TARGET, k=k).item() == pytest.approx(expected)


def test_top_k_acc_defaults_to_three():
    assert top_k_acc(OUTPUT, TARGET).item() == pytest.approx(0.75)


def test_nll_loss_on_known_log_probabilities():
    log_probs = torch.log(torch.tensor([[0.5, 0.5], [0.25, 0.75]]))

    assert nll_loss(log_probs, torch.tensor([0, 1])).item() == pytest.approx(-(math.log(0.5) + math.log(0.75)) / 2)


# ---- MetricTracker -----------------------------------------------------------
def test_average_is_weighted_by_batch_size():
    tracker = MetricTracker("loss", "accuracy")
    tracker.update("loss", 1.0, n=1)
    tracker.update("loss", 0.0, n=3)

    assert tracker.avg("loss") == pytest.approx(0.25)  # not (1.0 + 0.0) / 2


def test_tensor_values_on_any_device_are_averaged():
    tracker = MetricTracker("accuracy")
    tracker.update("accuracy", torch.tensor(0.5), n=64)
    tracker.update("accuracy", torch.tensor(1.0), n=36)

    assert tracker.result() == {"accuracy": pytest.approx((0.5 * 64 + 36) / 100)}


@pytest.mark.parametrize("copy_on_write", [False, True])
def test_data_frame_on_every_allowed_pandas(copy_on_write, monkeypatch):
    # the classic tracker writes through `_data.total[key] += ...`: chained assignment, which copy-on-write
    # (pandas 3, or pandas 2 with the option on) silently drops; requirements.txt allows pandas>=2.0
    if int(pd.__version__.split(".")[0]) < 3:
        monkeypatch.setattr(pd.options.mode, "copy_on_write", copy_on_write)
    elif not copy_on_write:
        pytest.skip("pandas 3 always copies on write")
    tracker = MetricTracker("loss", "accuracy")
    tracker.update("loss", 2.0, n=2)
    tracker.update("loss", 0.5, n=2)
    tracker.update("accuracy", 0.75, n=4)

    table = tracker._data

    assert isinstance(table, pd.DataFrame)
    assert list(table.index) == ["loss", "accuracy"]
    assert list(table.columns) == ["total", "counts", "average"]
    assert table.loc["loss"].tolist() == pytest.approx([5.0, 4, 1.25])
    assert table.loc["accuracy"].tolist() == pytest.approx([3.0, 4, 0.75])
    tracker.update("loss", 1.0, n=4)  # the table is read from the tracker each time, never a stale copy
    assert tracker._data.loc["loss"].tolist() == pytest.approx([9.0, 8, 1.125])


def test_reset_clears_every_key():
    tracker = MetricTracker("loss", "accuracy")
    tracker.update("loss", 3.0, n=5)
    tracker.update("accuracy", 1.0, n=5)

    tracker.reset()

    assert tracker._data["counts"].tolist() == [0, 0]
    assert tracker._data["total"].tolist() == [0.0, 0.0]
    assert all(math.isnan(v) for v in tracker.result().values())
    tracker.update("loss", 1.0, n=2)
    assert tracker.result()["loss"] == 1.0


def test_state_round_trip_keeps_averages():
    tracker = MetricTracker("loss")
    tracker.update("loss", torch.tensor(0.5), n=10)
    copy = MetricTracker("loss")

    copy.load_state_dict(tracker.state_dict())
    copy.update("loss", 1.0, n=10)

    assert copy.avg("loss") == pytest.approx(0.75)


# ---- requirements.txt ---------------------------------------------------------
def test_requirements_list_pandas():
    # the classic template imports pandas but forgot to list it
    lines = (REPO / "requirements.txt").read_text().splitlines()
    names = {re.split(r"[<>=!~\[; ]", line.strip(), maxsplit=1)[0].lower()
             for line in lines if line.strip() and not line.lstrip().startswith("#")}

    assert {"pandas", "torch", "torchvision", "numpy", "tensorboard", "tqdm", "pytest"} <= names


@pytest.mark.parametrize("saved_world, world", [(3, 2), (2, 3), (1, 2), (2, 1)])
def test_partial_sums_saved_by_another_number_of_ranks_add_up_to_the_same_totals(monkeypatch, saved_world, world):
    """A mid-epoch checkpoint of N ranks resumed on M: after the all-reduce the epoch's averages are unchanged."""
    from utils import distributed
    from utils.metric_tracker import RankShares

    saved = [{"totals": {"loss": 1.5 * (r + 1)}, "counts": {"loss": 10 + r}} for r in range(saved_world)]
    loaded = []
    for rank in range(world):
        monkeypatch.setattr(distributed, "get_rank", lambda rank=rank: rank)
        monkeypatch.setattr(distributed, "get_world_size", lambda: world)
        tracker = MetricTracker("loss")
        RankShares(tracker).load_state_dict(saved)
        loaded.append(tracker.state_dict())
    assert sum(s["totals"]["loss"] for s in loaded) == sum(s["totals"]["loss"] for s in saved)
    assert sum(s["counts"]["loss"] for s in loaded) == sum(s["counts"]["loss"] for s in saved)
