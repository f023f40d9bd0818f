"""Sharded (DCP) checkpoints under trainer.strategy "fsdp": saved at 2 gloo ranks, loaded at 1, 2 and 3 (uneven
shards) bitwise, continued to within 1e-6 of the run that kept its world size; a kill between the shards and the
commit; keep_last; test.py and export.py --consolidate on them. A crafted shard index or item is refused."""
import json
import os
import pickle
import shutil

import pytest
import torch

import test as test_entry
from runs.checkpoint_file import load_checkpoint
from runs.files import SHARD_FOLDER, SHARDS
from tests.helpers.cli import run_cli, train_in_process
from tests.helpers.configs import shrink_config, write_config
from tests.helpers.paths import REPO
from tests.helpers.runs import run_dirs
from tests.helpers.snapshots import snapshot_bytes_and_mtimes
from tests.helpers.strategy_runs import launch, resume_copy
from tests.helpers.tmpfs import tmpfs
from tests.helpers.torchrun import STANDALONE, run_torchrun
from utils import safe_dcp

LOAD_RUN = REPO / "tests" / "helpers" / "load_run.py"
KILL_IN_SAVE = REPO / "tests" / "helpers" / "kill_in_save.py"
GLOBAL_BATCH = 48  # 24 a rank at 2 ranks, 48 at 1, 16 at 3: the same steps at any world size
# no dropout (no random masks), 576 training samples (12 steps of 48): each step's data is the same at 1, 2, 3 ranks
EXACT = {"loader": {"batch_size": GLOBAL_BATCH // 2, "validation_split": 24}, "arch": {"dropout": 0.0}}


def refs(run):
    """{checkpoint name: the shard folder it refers to} of a run folder's .pth files."""
    return {p.name: torch.load(p, weights_only=True)[SHARDS]["folder"] for p in run.glob("*.pth")}


def folders(run):
    return {f"{SHARDS}/{p.name}" for p in (run / SHARDS).iterdir()}


def same_state(a, b):
    """Weights and optimizer state (plain format) bitwise equal; the optimizer keyed alike."""
    assert list(a["state_dict"]) == list(b["state_dict"])
    assert all(torch.equal(v, b["state_dict"][k]) for k, v in a["state_dict"].items())
    assert a["optimizer"]["param_groups"] == b["optimizer"]["param_groups"]
    assert set(a["optimizer"]["state"]) == set(b["optimizer"]["state"]) == set(range(8))
    for index, state in a["optimizer"]["state"].items():
        assert set(state) == set(b["optimizer"]["state"][index])
        assert all(torch.equal(v, b["optimizer"]["state"][index][k]) for k, v in state.items()), index


@pytest.fixture(scope="module")
def sharded(tmp_path_factory, synthetic_data_dir):
    """2 epochs at 2 ranks under FSDP, keep_last 1: its run folder, test.py's results and each rank's weights."""
    return launch(tmp_path_factory.mktemp("sharded") / "fsdp", synthetic_data_dir, "fsdp", keep_last=1, **EXACT)


@pytest.mark.slow
def test_each_save_is_a_shard_folder_named_by_its_pth_and_keep_last_leaves_only_those(sharded):
    run = sharded["run"]
    named = refs(run)
    assert set(named) == {"model_latest.pth", "checkpoint-epoch2.pth", "model_best.pth"}  # epoch 1's removed
    assert named["model_latest.pth"] == named["checkpoint-epoch2.pth"]
    assert all(SHARD_FOLDER.fullmatch(name) for name in named.values())
    assert folders(run) == set(named.values())  # epoch 1's folder is gone unless model_best still names it
    assert ("shards/epoch1-" in named["model_best.pth"]) == (len(folders(run)) == 2)
    raw = torch.load(run / "model_latest.pth", weights_only=True)
    assert "state_dict" not in raw and raw[SHARDS]["parts"] == ["state_dict", "optimizer"]
    assert len(list((run / named["model_latest.pth"]).glob("*.distcp"))) == 2  # every rank wrote its own shards
    # read whole in one process: the weights each rank held at the end, as a plain model's state_dict
    full = load_checkpoint(run / "model_latest.pth")
    ended = torch.load(sharded["evidence"] / "weights_rank0.pt", weights_only=True)
    assert SHARDS not in full and all(torch.equal(v, full["state_dict"][k]) for k, v in ended.items())


@pytest.mark.slow
@pytest.mark.parametrize("ranks", [1, 3])
def test_saved_at_two_ranks_loads_bitwise_at_other_world_sizes(sharded, ranks, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(sharded["run"], copy)
    out = tmp_path / "loaded.pt"
    launched = run_torchrun("--standalone", f"--nproc_per_node={ranks}", LOAD_RUN, copy / "model_latest.pth", out,
                            "--bs", str(GLOBAL_BATCH // ranks), timeout=240)
    assert launched.returncode == 0, launched.stdout[-3000:] + launched.stderr[-3000:]
    loaded = torch.load(out, weights_only=True)
    # under torchrun even 1 rank shards (a 1-rank mesh): each rank loads its own slices through DCP, uneven at 3
    # (one process without torchrun reads the folder whole: the first test above, and tests/test_fsdp.py)
    assert loaded["sharded"]
    same_state(loaded, load_checkpoint(copy / "model_latest.pth"))
    ended = torch.load(sharded["evidence"] / "weights_rank1.pt", weights_only=True)  # what the 2 ranks held
    assert all(torch.equal(v, loaded["state_dict"][k]) for k, v in ended.items())


@pytest.mark.slow
def test_continued_at_one_and_three_ranks_ends_within_1e6_of_the_run_that_kept_two(sharded, tmp_path):
    ends = {ranks: resume_copy(sharded["run"], tmp_path / f"at{ranks}", "fsdp", epochs=3, nproc=ranks,
                               flags=("--bs", str(GLOBAL_BATCH // ranks)))
            for ranks in (2, 1, 3)}
    assert [ends[r]["world_size"] for r in (2, 1, 3)] == [2, 1, 3]
    assert all(ends[r]["global_step"] == 36 for r in ends)  # 12 steps an epoch at every world size
    before = load_checkpoint(sharded["run"] / "model_latest.pth")["state_dict"]
    for ranks in (1, 3):
        for key, value in ends[2]["state_dict"].items():
            assert torch.allclose(value, ends[ranks]["state_dict"][key], rtol=0, atol=1e-6), (ranks, key)
    assert max((before[k] - v).abs().max() for k, v in ends[2]["state_dict"].items()) > 1e-4  # epoch 3 trained


@pytest.mark.slow
def test_a_changed_lr_on_resume_is_applied_to_the_loaded_shards_and_said(sharded, tmp_path):
    """-r ... --lr X under FSDP: the optimizer's param groups come back from the shards (Adam's step counts,
    the scheduler's initial_lr) and then take the new lr, in one logged line, as a plain resume does."""
    copy = tmp_path / "run"
    shutil.copytree(sharded["run"], copy)
    launched = run_torchrun(*STANDALONE, REPO / "train.py", "-r", copy / "model_latest.pth", "--lr", "0.0123",
                            "-o", "trainer.epochs=3", timeout=240)
    assert launched.returncode == 0, launched.stdout[-3000:] + launched.stderr[-3000:]
    saved_lr = load_checkpoint(sharded["run"] / "model_latest.pth")["config"]["optimizer"]["args"]["lr"]
    assert f"optimizer.args.lr changed from {saved_lr} to 0.0123" in launched.stdout + launched.stderr
    ended = load_checkpoint(copy / "model_latest.pth")
    assert [group["lr"] for group in ended["optimizer"]["param_groups"]] == [0.0123]
    assert ended["config"]["optimizer"]["args"]["lr"] == 0.0123


@pytest.mark.slow
def test_a_kill_between_the_shards_and_the_commit_leaves_the_previous_save(sharded, tmp_path, synthetic_data_dir):
    config = json.loads((sharded["run"] / "config.json").read_text())
    config["trainer"]["save_dir"] = str(tmp_path / "saved")
    path = write_config(tmp_path, config)
    killed = run_torchrun("--standalone", "--nproc_per_node=2", KILL_IN_SAVE, 2, "-c", path, "--run_id", "job",
                          timeout=240)
    assert killed.returncode != 0 and "KILLED in the save of epoch 2" in killed.stdout + killed.stderr
    run = tmp_path / "saved" / "models" / config["name"] / "job"
    orphan = folders(run) - set(refs(run).values())
    assert len(orphan) == 1 and (run / orphan.pop() / safe_dcp.METADATA).is_file()  # its shards were written
    assert load_checkpoint(run / "model_latest.pth")["epoch"] == 1  # the save before it, whole

    again = run_torchrun("--standalone", "--nproc_per_node=2", REPO / "train.py", "-c", path, "--run_id", "job",
                         timeout=240)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    info = next((tmp_path / "saved" / "log").glob("*/job/info.log")).read_text()
    assert "Resume training from epoch 2" in info
    assert folders(run) == set(refs(run).values())  # the orphan is gone
    end, unkilled = load_checkpoint(run / "model_latest.pth"), load_checkpoint(sharded["run"] / "model_latest.pth")
    assert end["epoch"] == 2
    same_state(end, unkilled)  # epoch 2 trained again from epoch 1's save: as if never killed


@pytest.mark.slow
def test_shards_of_another_architecture_are_refused_in_one_line(sharded, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(sharded["run"], copy)
    refused = run_torchrun("--standalone", "--nproc_per_node=2", REPO / "train.py", "-r", copy / "model_latest.pth",
                           "-o", "+arch.args.num_classes=5", "-o", "trainer.epochs=3", timeout=240)
    lines = [line for line in refused.stderr.splitlines() if line.startswith("error: ")]
    assert refused.returncode != 0 and len(lines) == 2, refused.stderr[-3000:]
    assert all("was made for another model or optimizer (its shards: state_dict.fc2.weight (10, 50) vs (5, 50)"
               in line for line in lines), lines


@pytest.mark.slow
def test_a_full_disk_during_the_shards_is_one_line_and_leaves_the_previous_save(sharded, tmp_path):
    config = json.loads((sharded["run"] / "config.json").read_text())
    with tmpfs(tmp_path / "small", "800k") as small:  # epoch 1 (0.49 MB of shards, 3 x 32 kB .pth) fits, 2 not
        config["trainer"]["save_dir"] = str(small / "saved")
        failed = run_torchrun("--standalone", "--nproc_per_node=2", REPO / "train.py", "-c",
                              write_config(tmp_path, config), timeout=240)
        (run,) = run_dirs(small / "saved")
        lines = [line for line in failed.stderr.splitlines() if "could not save shards/epoch2-" in line]
        assert failed.returncode != 0 and len(lines) == 2, failed.stderr[-3000:]  # one line a rank
        assert all("no space left on the device" in line and "resume with torchrun" in line for line in lines)
        assert load_checkpoint(run / "model_latest.pth")["epoch"] == 1
        assert folders(run) == set(refs(run).values()) and len(folders(run)) == 1  # the partial one removed


@pytest.mark.slow
def test_test_py_on_a_sharded_checkpoint_equals_its_consolidated_file(sharded, tmp_path, monkeypatch):
    copy = tmp_path / "run"
    shutil.copytree(sharded["run"], copy)
    assert run_cli("export", ["-r", copy / "model_best.pth", "--consolidate"], monkeypatch).returncode == 0
    single = copy / "model_best.consolidated.pth"
    plain = torch.load(single, weights_only=True)  # one file, no shard folder needed
    assert SHARDS not in plain and set(plain["optimizer"]["state"]) == set(range(8))
    results = {}
    for name in ("model_best.pth", single.name):
        test_entry.main(test_entry.parse_args(["-r", str(copy / name)]))
        results[name] = json.loads((copy / name).with_suffix(".test.json").read_text())
    assert results["model_best.pth"]["metrics"] == results[single.name]["metrics"]
    assert results["model_best.pth"]["metrics"]["accuracy"] == sharded["test"]["metrics"]["accuracy"]  # torchrun's
    assert results["model_best.pth"]["n_samples"] == 200


# ---- quick: a sharded checkpoint made in one process (a shard folder of plain tensors reads the same way) ----
class WritesAFile:
    """Unpickling it would create a file: the proof that nothing ran is that the file is absent."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


@pytest.fixture
def one_process_sharded(tmp_path, synthetic_data_dir):
    """A 1-epoch run whose model_latest.pth is turned into a sharded one: its weights and optimizer moved into a
    shard folder written by DCP in this process."""
    config = shrink_config(tmp_path, synthetic_data_dir, epochs=1, len_epoch=2)
    train_in_process("-c", write_config(tmp_path, config))
    (run,) = run_dirs(tmp_path / "saved")
    full = torch.load(run / "model_latest.pth", weights_only=True)
    name = "shards/epoch1-step2-0123abcd"
    safe_dcp.save({"state_dict": full["state_dict"], "optimizer": full["optimizer"]}, run / name)
    small = {k: v for k, v in full.items() if k not in ("state_dict", "optimizer")}
    torch.save({**small, SHARDS: {"folder": name, "parts": ["state_dict", "optimizer"]}}, run / "model_latest.pth")
    return run, run / name, full


def test_a_sharded_checkpoint_reads_whole_into_the_single_file_format(one_process_sharded):
    run, _, full = one_process_sharded
    whole = load_checkpoint(run / "model_latest.pth")
    assert set(whole) == set(full)
    same_state(whole, full)


def test_a_crafted_shard_index_is_refused_in_one_line_and_nothing_runs(one_process_sharded, monkeypatch, capsys):
    run, folder, _ = one_process_sharded
    target = run.parent / "pwned.txt"
    (folder / safe_dcp.METADATA).write_bytes(pickle.dumps(WritesAFile(str(target))))
    before = snapshot_bytes_and_mtimes(run.parent)
    for script in ("test", "train"):
        result = run_cli(script, ["-r", run / "model_latest.pth"], monkeypatch, capsys)
        assert result.returncode == 2 and len(result.stderr.splitlines()) == 1, result.stderr
        assert "safe reader refuses (it would load the global io.open)" in result.stderr, result.stderr[-600:]
        assert "Traceback" not in result.stderr and not target.exists()
    assert snapshot_bytes_and_mtimes(run.parent) == before


def test_a_crafted_shard_item_is_refused_by_the_safe_loader(one_process_sharded, tmp_path):
    run, folder, full = one_process_sharded
    target = tmp_path / "pwned.txt"
    shutil.rmtree(folder)
    group = {**full["optimizer"]["param_groups"][0], "x": WritesAFile(str(target))}
    evil = {**full["optimizer"], "param_groups": [group]}
    safe_dcp.save({"state_dict": full["state_dict"], "optimizer": evil}, folder)  # a non-tensor item, pickled
    with pytest.raises(Exception, match="safe loader") as refused:
        load_checkpoint(run / "model_latest.pth")
    assert type(refused.value).__name__ == "UserError" and not target.exists()


def test_a_missing_or_cut_shard_makes_the_checkpoint_not_intact(one_process_sharded):
    from runs.folder import newest_intact

    run, folder, _ = one_process_sharded
    shard = next(folder.glob("*.distcp"))
    os.truncate(shard, shard.stat().st_size - 1)
    notes = []
    assert newest_intact(run, notes)[1] == run / "checkpoint-epoch1.pth"  # the single file saved beside it
    assert "model_latest.pth" in notes[0][1] and "truncated or corrupt" in notes[0][1]


def test_consolidate_writes_the_single_file_format_once(one_process_sharded, monkeypatch, capsys):
    run, _, full = one_process_sharded
    assert run_cli("export", ["-r", run / "model_latest.pth", "--consolidate"], monkeypatch).returncode == 0
    single = run / "model_latest.consolidated.pth"
    same_state(torch.load(single, weights_only=True), full)
    before = snapshot_bytes_and_mtimes(run)
    again = run_cli("export", ["-r", run / "model_latest.pth", "--consolidate"], monkeypatch, capsys)
    assert again.returncode == 2 and len(again.stderr.splitlines()) == 1
    assert f"--out {single} must be a new .pth file" in again.stderr
    assert snapshot_bytes_and_mtimes(run) == before  # the first one is not overwritten
