"""DDP on CPU: one `torchrun --standalone --nproc_per_node=2` launch (gloo) trains and tests;
the checks then compare it with single-process evaluation, test.py and resume."""
import json
import math

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

import test as test_entry
from data_loader.data_loaders import MnistDataLoader
from model.model import MnistModel
from tests.helpers.cli import train_in_process
from tests.helpers.configs import shrink_config, write_config
from tests.helpers.runs import run_dirs
from tests.helpers.torchrun import DDP_RUN, STANDALONE, run_torchrun

pytestmark = pytest.mark.slow
TOLERANCE = 1e-6
N_VALID = 61


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory, synthetic_data_dir):
    """Train 2 epochs and test the best checkpoint with 2 gloo ranks; return the paths involved."""
    root = tmp_path_factory.mktemp("ddp")
    config = shrink_config(root, synthetic_data_dir)
    # 61 validation samples: shards of 31 and 30, so a mean of the ranks' means is not the global mean
    config["data_loader"]["args"]["validation_split"] = N_VALID
    config_path = write_config(root, config)
    evidence, rank_logs = root / "evidence", root / "torchrun_logs"
    evidence.mkdir()
    launched = run_torchrun(*STANDALONE, "--log-dir", rank_logs, "--redirects", "3", DDP_RUN, config_path, evidence,
                            timeout=90)
    per_rank = {rank: "".join(p.read_text() for p in sorted(rank_logs.glob(f"*/attempt_*/{rank}/*.log")))
                for rank in (0, 1)}
    assert launched.returncode == 0, launched.stderr[-3000:] + per_rank[0][-3000:] + per_rank[1][-3000:]
    (run,) = run_dirs(root / "saved")
    # read now: the single-process test.py below rewrites this file
    ddp_test = json.loads((run / "model_best.test.json").read_text())
    return {"root": root, "run": run, "config": config, "evidence": evidence,
            "rank_output": per_rank, "ddp_test": ddp_test}


def test_rank_zero_alone_writes_folders_logs_and_checkpoints(ddp_run):
    root, run = ddp_run["root"], ddp_run["run"]
    log_dirs = sorted(p for p in (root / "saved" / "log").glob("*/*") if p.is_dir())
    assert [d.name for d in log_dirs] == [run.name]
    assert [p.name for p in log_dirs[0].iterdir()] == ["info.log"]
    info = (log_dirs[0] / "info.log").read_text()
    assert info.count("epoch          : 1") == 1
    assert info.count("Saving checkpoint") == 2

    saves = {rank: (ddp_run["evidence"] / f"saves_rank{rank}.txt").read_text().split() for rank in (0, 1)}
    assert saves[1] == []
    assert {"checkpoint-epoch1.pth", "checkpoint-epoch2.pth", "model_latest.pth", "model_best.pth"} \
        == set(saves[0])
    assert not list(run.glob(".*tmp*"))
    # rank 1 logs warnings and errors only: none of the progress rank 0 prints
    for line in ("Trainable parameters", "val_loss", "Saving checkpoint", "Results saved"):
        assert line in ddp_run["rank_output"][0]
        assert line not in ddp_run["rank_output"][1]


def test_ranks_end_with_identical_weights(ddp_run):
    evidence = ddp_run["evidence"]
    weights = [torch.load(evidence / f"weights_rank{rank}.pt", weights_only=True) for rank in (0, 1)]
    saved = torch.load(ddp_run["run"] / "model_latest.pth", weights_only=True)
    assert set(weights[0]) == set(saved["state_dict"])  # no `module.` prefixes in the checkpoint
    for key, value in weights[0].items():
        assert torch.equal(value, weights[1][key]), key
        assert torch.equal(value, saved["state_dict"][key]), key
    assert saved["world_size"] == 2
    rng = saved["rng_states"]
    assert len(rng) == 2 and not torch.equal(rng[0]["torch"], rng[1]["torch"])  # seeded per rank


def per_sample_validation(config, checkpoint_path):
    """{index: (loss, correct)} over the run's validation split, one process, float64 losses."""
    loader = MnistDataLoader(**config["data_loader"]["args"], seed=config["seed"]).split_validation()
    model = MnistModel()
    model.load_state_dict(torch.load(checkpoint_path, weights_only=True)["state_dict"])
    model.eval()
    order = [i for batch in loader.batch_sampler for i in batch]
    losses, correct = [], []
    with torch.no_grad():
        for images, targets in loader:
            output = model(images)
            losses += F.nll_loss(output, targets, reduction="none").double().tolist()
            correct += (output.argmax(dim=1) == targets).tolist()
    return {index: (loss, hit) for index, loss, hit in zip(order, losses, correct, strict=True)}


def mean(values):
    return math.fsum(values) / len(values)


def test_each_validation_sample_goes_to_exactly_one_rank(ddp_run):
    shards = [json.loads((ddp_run["evidence"] / f"valid_indices_rank{r}.json").read_text()) for r in (0, 1)]
    every = per_sample_validation(ddp_run["config"], ddp_run["run"] / "checkpoint-epoch1.pth")
    assert sorted(shards[0] + shards[1]) == sorted(every)  # no sample twice, none left out
    assert sorted(map(len, shards)) == [30, 31]


def test_validation_metrics_equal_single_process_evaluation(ddp_run):
    history = pd.read_csv(ddp_run["run"] / "metrics.csv")
    shards = [json.loads((ddp_run["evidence"] / f"valid_indices_rank{r}.json").read_text()) for r in (0, 1)]
    assert list(history["epoch"]) == [1, 2]
    for _, row in history.iterrows():
        epoch = int(row["epoch"])
        samples = per_sample_validation(ddp_run["config"], ddp_run["run"] / f"checkpoint-epoch{epoch}.pth")
        assert len(samples) == N_VALID
        loss = mean([loss for loss, _ in samples.values()])
        accuracy = mean([hit for _, hit in samples.values()])
        assert math.isclose(row["val_loss"], loss, rel_tol=TOLERANCE), epoch
        assert math.isclose(row["val_accuracy"], accuracy, rel_tol=TOLERANCE, abs_tol=TOLERANCE), epoch
        # the test means something only if averaging the ranks' own means would give another loss
        mean_of_means = mean([mean([samples[i][0] for i in shard]) for shard in shards])
        assert abs(mean_of_means - loss) > 100 * TOLERANCE * loss, "shards too alike to tell the averages apart"


def test_test_script_under_torchrun_matches_single_process(ddp_run):
    ddp_results = ddp_run["ddp_test"]
    best = ddp_run["run"] / "model_best.pth"
    test_entry.main(test_entry.parse_args(["-r", str(best)]))
    single = json.loads(best.with_name("model_best.test.json").read_text())
    assert ddp_results["n_samples"] == single["n_samples"] == 200
    for name, value in single["metrics"].items():
        assert math.isclose(ddp_results["metrics"][name], value, rel_tol=0, abs_tol=TOLERANCE), name


def test_ddp_checkpoint_resumes_in_one_process(ddp_run):
    run = ddp_run["run"]
    before = pd.read_csv(run / "metrics.csv")
    ddp_latest = torch.load(run / "model_latest.pth", weights_only=True)
    assert (ddp_latest["epoch"], ddp_latest["global_step"]) == (2, 10)

    config = train_in_process("-r", run / "model_latest.pth", "-o", "trainer.epochs=3")
    assert config.save_dir == run  # continues the same run folder
    after = pd.read_csv(run / "metrics.csv")
    assert list(after["epoch"]) == [1, 2, 3]
    pd.testing.assert_frame_equal(after.iloc[:2], before)
    resumed = torch.load(run / "checkpoint-epoch3.pth", weights_only=True)
    # one process takes all 539 training samples: 9 batches of 64 after the 10 DDP steps
    assert (resumed["epoch"], resumed["global_step"], resumed["world_size"]) == (3, 19, 1)
    assert len(resumed["rng_states"]) == 1
