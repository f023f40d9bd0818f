"""Code written for the classic pytorch-template runs unchanged here.

A project copy gets classic-style user files (written for this test): a Trainer
subclass, a data loader, loss/metric/model files without `__all__`, and a
train.py / test.py in the classic shape. They use the classic idioms:
`data_loader.batch_size`, `inf_loop`, `MetricTracker(..., writer=self.writer)`,
`writer.set_step`, `len(self.data_loader.sampler)`, `init_kwargs`,
`from trainer import Trainer`, and a `loss` section built by `init_obj`.
The real entry points then train, test, resume and fine-tune with them.
"""
import json
import math
import shutil
import subprocess
import sys
import textwrap

import pandas as pd
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from base import BaseDataLoader
from tests.helpers.classic_project import BATCH, N_TRAIN, N_VALID, USER_FILES, classic_config
from tests.helpers.paths import REPO
from tests.helpers.runs import run_dirs


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A copy of the template with the classic-style user files in place of ours."""
    root = tmp_path_factory.mktemp("classic") / "project"
    shutil.copytree(REPO, root, ignore=shutil.ignore_patterns(".git", "saved", "data", "__pycache__", ".*cache"))
    for rel, text in USER_FILES.items():
        (root / rel).write_text(textwrap.dedent(text).lstrip())
    return root


def run_in(project, script, *args):
    result = subprocess.run([sys.executable, script, *map(str, args)], cwd=project, capture_output=True,
                            text=True, timeout=300, env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def classic_run(project, tmp_path_factory, synthetic_data_dir):
    tmp = tmp_path_factory.mktemp("classic_run")
    config_path = tmp / "config.json"
    config_path.write_text(json.dumps(classic_config(synthetic_data_dir, tmp / "saved")))
    result = run_in(project, "train.py", "-c", config_path)
    (run,) = run_dirs(tmp / "saved")
    return {"tmp": tmp, "run": run, "stdout": result.stdout, "data_dir": synthetic_data_dir}


@pytest.mark.slow
def test_classic_idioms_see_the_classic_values(classic_run):
    # batch_size is the configured number, the sampler is the training split, log_step = sqrt(batch)
    assert (f"classic batch_size={BATCH} sampler={N_TRAIN} valid_batch_size={BATCH} "
            f"log_step={int(math.sqrt(BATCH))}") in classic_run["stdout"]
    assert f"Train Epoch: 1 [160/{N_TRAIN}]" in classic_run["stdout"]  # batch 5 of 32 samples
    history = pd.read_csv(classic_run["run"] / "metrics.csv")
    assert history["epoch"].tolist() == [1, 2]
    assert history["val_loss"].iloc[1] < history["val_loss"].iloc[0]


@pytest.mark.slow
def test_classic_tensorboard_calls_write_what_they_wrote_in_the_classic(classic_run):
    (events,) = (classic_run["tmp"] / "saved" / "log").glob("*/*/events.out.tfevents.*")
    tb = EventAccumulator(str(events), size_guidance={"scalars": 0, "histograms": 0})
    tb.Reload()
    tags = tb.Tags()
    per_batch = [e.step for e in tb.Scalars("accuracy/train")]  # only the tracker's writer writes this tag
    batches = math.ceil(N_TRAIN / BATCH)
    assert per_batch == list(range(2 * batches))  # every batch of both epochs, at set_step's step
    assert "steps_per_sec/train" in tags["scalars"] and "steps_per_sec/valid" in tags["scalars"]
    assert "fc.weight" in tags["histograms"]  # histograms keep their own tag, no /train or /valid


@pytest.mark.slow
def test_classic_test_py_and_resume_and_fine_tuning(project, classic_run):
    run, tmp = classic_run["run"], classic_run["tmp"]
    tested = run_in(project, "test.py", "-r", run / "model_best.pth")
    (line,) = [x for x in tested.stdout.splitlines() if x.startswith("RESULT ")]
    results = json.loads(line.removeprefix("RESULT "))
    assert results["n_samples"] == 200 and results["accuracy"] > 0.5

    # -r: epoch 2 again from the epoch-1 checkpoint, in the same folder, exactly as before
    straight = pd.read_csv(run / "metrics.csv")
    shutil.copy(run / "checkpoint-epoch1.pth", tmp / "epoch1.pth")
    run_in(project, "train.py", "-r", run / "checkpoint-epoch1.pth")
    resumed = pd.read_csv(run / "metrics.csv")
    assert resumed["epoch"].tolist() == [1, 2]
    assert resumed["val_loss"].iloc[1] == straight["val_loss"].iloc[1]
    assert resumed["loss"].iloc[1] == straight["loss"].iloc[1]

    # -c partial.json -r: the checkpoint's config, with the file's sections replacing its own
    partial = tmp / "partial.json"
    partial.write_text(json.dumps({"trainer": {**classic_config("", tmp / "saved")["trainer"], "epochs": 3}}))
    run_in(project, "train.py", "-c", partial, "-r", run / "model_best.pth")
    (fine_tuned,) = [r for r in run_dirs(tmp / "saved") if r != run]
    assert pd.read_csv(fine_tuned / "metrics.csv")["epoch"].tolist() == [3]
    saved = json.loads((fine_tuned / "config.json").read_text())
    assert saved["trainer"]["epochs"] == 3 and saved["loss"]["type"] == "WeightedNLL"


def test_passes_change_order_without_set_epoch_and_repeat_for_the_seed(synthetic_data_dir):
    def orders(loader, passes=3):
        return [[i for batch in loader.batch_sampler for i in batch] for _ in range(passes)]

    from data_loader.data_loaders import MnistDataLoader

    def make():
        return MnistDataLoader(str(synthetic_data_dir), batch_size=BATCH, validation_split=0.1, download=False, seed=3)

    first = orders(make())
    assert first[0] != first[1] and first[1] != first[2]  # a classic loop never calls set_epoch
    assert first == orders(make())  # still a function of (seed, pass): exact resume holds
    loader = make()
    loader.set_epoch(2)
    assert [i for batch in loader.batch_sampler for i in batch] == first[1]


def test_a_plain_loader_cannot_resume_inside_a_pass():
    from torch.utils.data import DataLoader, TensorDataset

    from trainer.batch_stream import BatchStream
    from utils.errors import UserError

    plain = DataLoader(TensorDataset(torch.arange(100)), batch_size=10, shuffle=True)
    stream = BatchStream(plain)
    stream.load_state_dict({"data_pass": 2, "samples": 0})  # at a pass boundary: fine
    with pytest.raises(UserError, match="subclass BaseDataLoader"):
        stream.load_state_dict({"data_pass": 2, "samples": 30})


def test_init_kwargs_build_a_loader_of_the_configured_batch_size(synthetic_data_dir):
    from data_loader.data_loaders import MnistDataLoader

    loader = MnistDataLoader(str(synthetic_data_dir), batch_size=BATCH, validation_split=0.1, download=False)
    assert isinstance(loader, BaseDataLoader)
    assert loader.batch_size == BATCH and len(loader.sampler) == loader.n_samples == N_TRAIN
    from torch.utils.data import DataLoader

    valid = DataLoader(sampler=loader.valid_sampler, **loader.init_kwargs)
    sizes = [len(target) for _, target in valid]
    assert sizes == [BATCH, N_VALID - BATCH]
