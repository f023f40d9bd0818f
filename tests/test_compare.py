"""compare.py on run folders written file by file: seeds folded into mean ± std, only differing keys shown,
states read from the lock and metrics.csv, and broken folders skipped with one line each."""
import csv
import io
import json
import statistics
import subprocess
import sys

import pytest

from tests.helpers.cli import run_script
from tests.helpers.locks import lock_held_elsewhere
from tests.helpers.paths import REPO
from tests.helpers.run_folders import fabricate_run

SETTINGS = {"a": (0.001, 128), "b": (0.01, 128), "c": (0.01, 256)}  # (lr, batch size): 3 settings


@pytest.fixture
def name_folder(tmp_path):
    return tmp_path / "saved" / "models" / "Mnist_LeNet"


def compare(*args):
    return run_script("compare.py", *args, timeout=60)


def csv_rows(stdout):
    return list(csv.DictReader(io.StringIO(stdout)))


def test_three_settings_of_two_seeds_are_three_rows_of_mean_and_std(name_folder):
    for label, (lr, batch_size) in SETTINGS.items():
        for seed in (1, 2):
            fabricate_run(name_folder, f"{label}-seed{seed}", seed=seed, lr=lr, batch_size=batch_size,
                          test_accuracy=0.9 + seed / 100)
    done = compare(name_folder, "--csv")
    assert done.returncode == 0, done.stderr
    rows = csv_rows(done.stdout)
    assert [row["run"] for row in rows] == ["a-seed*", "b-seed*", "c-seed*"]
    assert all(row["n"] == "2" for row in rows)
    setting_columns = [c for c in rows[0] if "." in c]
    assert setting_columns == ["data_loader.args.batch_size", "optimizer.args.lr"]  # config order; not seed
    final = [1 / 3 + 0.01 * 10 + seed * 0.001 for seed in (1, 2)]  # fabricate_run's last val_loss at lr 0.01
    assert float(rows[1]["val_loss"]) == pytest.approx(statistics.fmean(final), rel=1e-5)
    assert float(rows[1]["val_loss_std"]) == pytest.approx(statistics.stdev(final), rel=1e-3)
    assert float(rows[0]["test_accuracy"]) == pytest.approx(0.915) and rows[0]["test_accuracy_std"] != ""
    assert [row["state"] for row in rows] == ["finished"] * 3


def test_text_and_markdown_show_mean_plus_minus_std(name_folder):
    for seed in (1, 2):
        fabricate_run(name_folder, f"x-seed{seed}", seed=seed)
    text = compare(name_folder).stdout.splitlines()
    assert text[0].split()[:4] == ["run", "n", "state", "epochs"] and "±" in text[1]
    markdown = compare(name_folder, "--markdown").stdout.splitlines()
    assert markdown[1].startswith("| --- |") and markdown[2].startswith("| x-seed* | 2 | finished |")


def test_where_and_sort_pick_and_order_the_rows(name_folder):
    for label, (lr, batch_size) in SETTINGS.items():
        fabricate_run(name_folder, label, lr=lr, batch_size=batch_size)
    rows = csv_rows(compare(name_folder, "--csv", "--where", "optimizer.args.lr=0.01", "--sort=-run").stdout)
    assert [row["run"] for row in rows] == ["c", "b"]
    assert [c for c in rows[0] if "." in c] == ["data_loader.args.batch_size"]  # lr is the same in both now
    typo = compare(name_folder, "--where", "lr=0.01")
    assert typo.returncode == 2 and typo.stderr.strip() == (
        "error: --where lr: no run shown has this key; did you mean optimizer.args.lr?")


def test_a_save_dir_a_models_folder_and_run_folders_list_the_same_runs(name_folder):
    runs = [fabricate_run(name_folder, label, lr=lr, batch_size=batch_size)
            for label, (lr, batch_size) in SETTINGS.items()]
    (name_folder.parent.parent / "log").mkdir()  # the log twin holds no runs: nothing to skip there
    for given in ([name_folder.parent.parent], [name_folder.parent], runs, [name_folder, runs[0]]):
        done = compare(*given, "--csv")
        assert [row["run"] for row in csv_rows(done.stdout)] == ["a", "b", "c"] and done.stderr == "", given


def test_a_study_shows_as_its_trials(name_folder):
    for trial, lr in enumerate((0.001, 0.01, 0.1)):
        fabricate_run(name_folder, f"study-trial{trial}", lr=lr, seed=trial, tune={"study": "study", "trial": trial})
    rows = csv_rows(compare(name_folder, "--csv", "--where", "tune.study=study", "--sort", "best").stdout)
    assert [(row["run"], row["optimizer.args.lr"]) for row in rows] == [
        ("study-trial0", "0.001"), ("study-trial1", "0.01"), ("study-trial2", "0.1")]
    assert [c for c in rows[0] if "." in c] == ["optimizer.args.lr"]  # trial numbers and seeds are no settings


def test_a_pruned_trial_shows_as_pruned_from_its_study_database(name_folder):
    optuna = pytest.importorskip("optuna")
    database = name_folder.parent.parent / "tune" / "study.db"  # tune.py's default place
    database.parent.mkdir(parents=True)
    study = optuna.create_study(study_name="study", storage=f"sqlite:///{database}")
    for trial_number, state in enumerate((optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)):
        trial = study.ask()
        trial.set_user_attr("run_id", f"study-trial{trial_number}")
        study.tell(trial, 0.5 if state == optuna.trial.TrialState.COMPLETE else None, state=state)
        fabricate_run(name_folder, f"study-trial{trial_number}", lr=0.001 * (1 + trial_number), epochs=3,
                      done=3 - 2 * trial_number, tune={"study": "study", "trial": trial_number})
    states = [row["state"] for row in csv_rows(compare(name_folder, "--csv").stdout)]
    assert states == ["finished", "pruned"]


def test_a_running_and_an_interrupted_run_show_their_state(name_folder):
    fabricate_run(name_folder, "done")
    interrupted = fabricate_run(name_folder, "cut", epochs=5, done=2, lr=0.01)
    running = fabricate_run(name_folder, "busy", epochs=5, done=1, lr=0.1)
    with lock_held_elsewhere(running) as holder:
        states = {row["run"]: row["state"] for row in csv_rows(compare(name_folder, "--csv").stdout)}
        assert (running / ".lock").is_file()  # compare only looked: the lock is still the holder's
        assert states["busy"].startswith("running (host ") and f"pid {holder.pid} since" in states["busy"]
    assert states["cut"] == "interrupted" and states["done"] == "finished"
    after = {row["run"]: row for row in csv_rows(compare(name_folder, "--csv").stdout)}
    assert after["busy"]["state"] == "interrupted" and after["cut"]["epochs"] == "2"  # the kill freed it
    assert interrupted.is_dir()


def test_the_lock_is_looked_at_never_taken(tmp_path, monkeypatch):
    """Taking a free lock even for a moment could make a job starting then find its run busy."""
    import fcntl

    from runs import lock as run_lock

    def no_taking(*args):
        raise AssertionError("compare.py took a run's lock")

    (tmp_path / ".lock").write_text("host h pid 1 since then\n")  # left by a job that died
    (tmp_path / "busy").mkdir()
    with lock_held_elsewhere(tmp_path / "busy") as holder:
        monkeypatch.setattr(fcntl, "lockf", no_taking)
        monkeypatch.setattr(fcntl, "flock", no_taking)
        assert run_lock.holder_seen(tmp_path) is None
        assert f"pid {holder.pid} since" in run_lock.holder_seen(tmp_path / "busy")


def test_early_stop_counts_as_finished(name_folder):
    folder = fabricate_run(name_folder, "stopped", epochs=10, done=5, val_losses=[0.5, 0.4, 0.6, 0.7, 0.8])
    config = json.loads((folder / "config.json").read_text())
    config["trainer"]["early_stop"] = 2
    (folder / "config.json").write_text(json.dumps(config))
    row = csv_rows(compare(folder, "--csv").stdout)[0]
    assert (row["state"], row["best val_loss"], row["best_epoch"]) == ("finished (early stop)", "0.4", "2")


def test_stray_file_foreign_folder_and_truncated_runs_are_one_line_each(name_folder):
    for seed in (1, 2):
        fabricate_run(name_folder, f"good-seed{seed}", seed=seed)
    (name_folder / "notes.txt").write_text("my notes")
    (name_folder / "plots").mkdir()
    cut_history = fabricate_run(name_folder, "cut-history")
    text = (cut_history / "metrics.csv").read_text()
    (cut_history / "metrics.csv").write_text(text[:text.rindex(",") - 3])  # killed mid-write, as copied
    cut_config = fabricate_run(name_folder, "cut-config")
    (cut_config / "config.json").write_text((cut_config / "config.json").read_text()[:50])
    half_made = name_folder / "half-made"
    half_made.mkdir()
    (half_made / "metrics.csv").write_text("epoch,loss\n1,0.5\n")
    done = compare(name_folder, "--csv")
    assert done.returncode == 0 and "Traceback" not in done.stderr
    assert [row["run"] for row in csv_rows(done.stdout)] == ["good-seed*"]
    lines = done.stderr.splitlines()
    assert len(lines) == 5 and all(line.endswith("; skipped") for line in lines)
    for name, why in [("cut-config", "config.json cannot be read"), ("cut-history", "metrics.csv line 4 has"),
                      ("half-made", "no config.json"), ("notes.txt", "a stray file"), ("plots", "not a run folder")]:
        assert any(line.startswith(str(name_folder / name)) and why in line for line in lines), (name, lines)


def test_nothing_readable_is_one_line_and_exit_2(tmp_path):
    (tmp_path / "empty").mkdir()
    done = compare(tmp_path / "empty")
    assert done.returncode == 2 and done.stderr.startswith("error: no readable run folder in ")
    assert len(done.stderr.splitlines()) == 1


def test_compare_does_not_import_torch():
    code = "import sys, compare; print('torch' in sys.modules, 'pandas' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == ["False", "False"], done.stderr
