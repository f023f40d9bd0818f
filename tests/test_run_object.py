"""The run object and the checkpointer (issue 23): a part added in one registration is saved and restored
exactly; building a ConfigParser from arguments writes nothing and takes no lock; test.py never writes into a run
another job holds; every run file name is spelled in one module."""
import ast
import subprocess
import sys

import pytest
import torch

import train
from runs import lock as run_lock
from runs.files import LATEST, TRACKER_IDS
from runs.tracking import run_info
from tests.helpers.cli import train_in_process
from tests.helpers.configs import shrink_config, write_config
from tests.helpers.locks import lock_held_elsewhere
from tests.helpers.paths import REPO


class Draws:
    """A checkpoint part only this test defines: a random tensor and a count."""

    def __init__(self):
        self.value, self.count = torch.zeros(5), 0

    def state_dict(self):
        return {"value": self.value.clone(), "count": self.count}

    def load_state_dict(self, state):
        self.value, self.count = state["value"].clone(), state["count"]


def test_a_part_registered_once_is_saved_and_restored_bit_exactly(tmp_path, synthetic_data_dir, one_thread):
    path = write_config(tmp_path, shrink_config(tmp_path, synthetic_data_dir, epochs=1))
    trainer = train.build_trainer(train.parse_args(["-c", str(path)]))
    draws = Draws()
    trainer.checkpointer.register("draws", draws)  # the one registration
    draws.value, draws.count = torch.randn(5, dtype=torch.float64).float(), 7
    trainer.train()
    saved = torch.load(trainer.config.save_dir / LATEST, weights_only=True)
    assert torch.equal(saved["draws"]["value"], draws.value) and saved["draws"]["count"] == 7

    resumed = train.build_trainer(train.parse_args(["-r", str(trainer.config.save_dir / LATEST)]))
    fresh = Draws()
    resumed.checkpointer.register("draws", fresh)
    resumed.train()  # restores every part, then finds nothing left to train
    assert torch.equal(fresh.value, draws.value) and fresh.count == 7
    with pytest.raises(ValueError, match="registered twice"):
        resumed.checkpointer.register("draws", Draws())


def folder_snapshot(root):
    return sorted((str(p.relative_to(root)), p.stat().st_mtime_ns) for p in root.rglob("*"))


def test_building_the_config_of_a_named_run_writes_nothing_and_takes_no_lock(tmp_path, synthetic_data_dir):
    path = write_config(tmp_path, shrink_config(tmp_path, synthetic_data_dir, epochs=1))
    first = train_in_process("-c", path, "--run_id", "job1")
    before = folder_snapshot(tmp_path / "saved")

    parser = train.parse_args(["-c", str(path), "--run_id", "job1", "-o", "trainer.epochs=2"])

    assert folder_snapshot(tmp_path / "saved") == before
    assert run_lock.holder(first.save_dir) is None and not (first.save_dir / run_lock.LOCK_NAME).exists()
    assert parser.save_dir == first.save_dir and parser.run.checkpoint["epoch"] == 1
    assert len(vars(parser)) <= 6, sorted(vars(parser))


def test_a_run_saved_into_after_its_start_was_decided_is_not_written_over(tmp_path, synthetic_data_dir):
    """The start reads without the lock: a save by another job between that read and the lock is noticed."""
    path = write_config(tmp_path, shrink_config(tmp_path, synthetic_data_dir, epochs=2))
    train_in_process("-c", path, "--run_id", "job1", "-o", "trainer.epochs=1")
    late = train.build_trainer(train.parse_args(["-c", str(path), "--run_id", "job1"]))  # decided: from epoch 1
    train_in_process("-c", path, "--run_id", "job1")  # another job trains epoch 2 meanwhile
    with pytest.raises(run_lock.RunBusy, match="saved into by another job"):
        late.train()
    assert torch.load(late.config.save_dir / LATEST, weights_only=True)["epoch"] == 2


def test_test_py_writes_its_results_only_while_no_job_holds_the_run(tmp_path, synthetic_data_dir):
    path = write_config(tmp_path, shrink_config(tmp_path, synthetic_data_dir, epochs=1))
    run = train_in_process("-c", path).save_dir
    results = run / "model_latest.test.json"
    with lock_held_elsewhere(run):
        busy = subprocess.run([sys.executable, "test.py", "-r", str(run / LATEST)], cwd=REPO, capture_output=True,
                              text=True)
    assert busy.returncode == 0 and "results not saved" in busy.stdout + busy.stderr
    assert not results.exists()
    free = subprocess.run([sys.executable, "test.py", "-r", str(run / LATEST)], cwd=REPO, capture_output=True,
                          text=True)
    assert free.returncode == 0 and results.is_file()
    assert not (run / run_lock.LOCK_NAME).exists()  # let go again


def test_tracker_ids_are_written_only_by_the_runs_owner(tmp_path, synthetic_data_dir):
    path = write_config(tmp_path, shrink_config(tmp_path, synthetic_data_dir, epochs=1))
    config = train_in_process("-c", path)
    info = run_info(config, 1)
    with pytest.raises(run_lock.RunBusy):  # the run ended: its lock is free, so nobody owns it now
        info.save_ids({"mlflow": {"run_id": "x"}})
    assert not (config.save_dir / TRACKER_IDS).exists()


RUN_FILES = ["model_latest.pth", "model_best.pth", "checkpoint-epoch", "metrics.csv", "run.json", "trackers.json",
             "provenance.json"]
PROJECT_CONFIG_MENTIONS = {"parse_config.py", "utils/config/check.py", "new_project.py", "repeat.py"}  # -c config.json


def string_literals(path):
    """Every string constant in the module at `path` except docstrings, with its line."""
    tree = ast.parse(path.read_text())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings]


def test_each_run_file_name_and_the_run_path_are_spelled_in_one_module():
    sources = subprocess.run(["git", "ls-files", "*.py"], cwd=REPO, capture_output=True, text=True).stdout.split()
    found = {}
    for name in (s for s in sources if not s.startswith("tests/")):
        for _, text in string_literals(REPO / name):
            for file_name in RUN_FILES:
                if file_name in text:
                    found.setdefault(file_name, set()).add(name)
            if "config.json" in text.replace("logger_config.json", "") and name not in PROJECT_CONFIG_MENTIONS:
                found.setdefault("config.json", set()).add(name)
            if text == "models":  # the run folder formula <save_dir>/models/<name>/<run>
                found.setdefault("path formula", set()).add(name)
    assert found == {key: {"runs/files.py"} for key in [*RUN_FILES, "config.json", "path formula"]}
