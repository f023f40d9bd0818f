"""A trial failed by another worker while this one still trained it (issue 25 leftovers, docs/search.md
"Faults"): run folders not on a shared disk, or an outage longer than grace_period, let another worker take the
trial for dead and queue its retry. This worker then finds the trial finished when it reports or tells it:
it says so in one line, leaves the result to the retry and goes on with the next trial; the retry continues
the same run, finds it trained and records its value."""
import csv

import optuna
import pytest
from optuna.trial import TrialState

from search.claim import fail_if_running
from search.recovery import retry_after_kill
from search.storage import storage_url
from tests.helpers.cli import run_cli
from tests.helpers.tune_setup import after_each_epoch, load_study, tune_config, write

EPOCHS = 2


def revive_as_another_worker(config):
    """What another worker's fail_stale_trials does to a trial it takes for dead: fail it, queue its retry;
    through a connection of its own to the study's database."""
    name = config["tune"]["study"]
    other = optuna.load_study(study_name=name, storage=storage_url(None, config["trainer"]["save_dir"], name))
    (running,) = other.get_trials(states=(TrialState.RUNNING,))
    assert fail_if_running(other._storage, running._trial_id)
    retry_after_kill()(other, other._storage.get_trial(running._trial_id))


def best_in_history(run, metric="val_loss"):
    with (run / "metrics.csv").open(encoding="utf-8", newline="") as handle:
        return min(float(row[metric]) for row in csv.DictReader(handle))


@pytest.mark.parametrize("when", ["mid-trial", "after-its-last-epoch", "before-its-tell"])
def test_a_trial_revived_elsewhere_is_left_to_its_retry_which_records_its_run(tmp_path, synthetic_data_dir,
                                                                            monkeypatch, capsys, when):
    """Revived mid-trial: this worker's report is refused, it stops at that epoch's save and the retry trains
    the rest of the same run. Revived after the last epoch's save (its report refused) or once training ended
    (its tell refused): the retry finds the run trained and records it."""
    import tune

    config = tune_config(tmp_path, synthetic_data_dir, trainer={"epochs": EPOCHS}, trials=2)
    path = write(tmp_path, config)
    revived = []

    def once():
        if not revived:
            revive_as_another_worker(config)
            revived.append(when)
    if when == "before-its-tell":
        train_trial = tune.Search.train_trial

        def then_revived(*args):
            trained = train_trial(*args)
            once()
            return trained
        monkeypatch.setattr(tune.Search, "train_trial", then_revived)
    else:
        after_each_epoch(monkeypatch, lambda epoch: epoch == (1 if when == "mid-trial" else EPOCHS) and once())
    code, out, err = run_cli("tune", ["-c", path], monkeypatch, capsys)

    assert code == 0 and "Traceback" not in err, err[-3000:]
    lines = err.splitlines()
    assert len(lines) == 1 and "trial 0 (s-trial0) was revived by another worker while this one trained it" \
        in lines[0], err
    study = load_study(config)
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
    assert [t.user_attrs["run_id"] for t in study.trials] == ["s-trial0", "s-trial0", "s-trial2"]
    run = tmp_path / "saved" / "models" / config["name"] / "s-trial0"
    retry = study.trials[1]
    assert retry.value == best_in_history(run) and retry.user_attrs["epochs"] == EPOCHS
    if when == "mid-trial":
        assert "Resume training from epoch 2" in out
    else:
        assert "The run has trained its 2 epochs already; its result is recorded" in out and "Nothing to" not in out
