"""What tune.py prints about trials: a line per trial, the final table, the best trial with the
commands to test and browse it (each trial's HParams are its run's own: logger/hparams.py)."""
import math

from optuna.trial import TrialState

from runs.files import BEST
from utils.redact import HIDDEN

DONE = (TrialState.COMPLETE, TrialState.PRUNED)


def progress_line(study, trial, metric, wanted):
    done = sum(t.state in DONE for t in study.get_trials(deepcopy=False))
    seconds = (trial.datetime_complete - trial.datetime_start).total_seconds() \
        if trial.datetime_complete and trial.datetime_start else 0.0
    line = (f"[{done}/{wanted}] trial {trial.number} ({trial.user_attrs.get('run_id', '?')}) {trial.state.name}: "
            f"{metric} {_number(trial.value)} after {trial.user_attrs.get('epochs', '?')} epochs, {seconds:.1f}s; "
            f"{_params(trial.params)}")
    note = trial.user_attrs.get("note")
    best = best_trial(study)
    return line + (f" ({note})" if note else "") \
        + (f" | best: trial {best.number}, {_number(best.value)}" if best is not None else "")


def trials_table(trials, metric):
    """One row per trial: number, run, state, objective, epochs, then each parameter."""
    keys = sorted({k for t in trials for k in t.params})
    header = ["trial", "run", "state", metric, "epochs", *keys]
    rows = [[str(t.number), t.user_attrs.get("run_id", "-"), t.state.name, _number(t.value),
             str(t.user_attrs.get("epochs", "-")), *(_value(t.params.get(k, "-")) for k in keys)] for t in trials]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
            for row in [header, *rows]]


def best_trial(study):
    """The best COMPLETE trial with a finite value, or None while there is none."""
    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if t.value is not None and math.isfinite(t.value)]
    if not complete:
        return None
    pick = min if study.direction.name == "MINIMIZE" else max
    return pick(complete, key=lambda t: t.value)


def summary_lines(study, metric, runs_dir, dashboard_url, log_root):
    lines = [f"Study {study.study_name}:", *trials_table(study.get_trials(deepcopy=False), metric)]
    best = best_trial(study)
    if best is None:
        return [*lines, "No trial has completed yet."]
    run = runs_dir / best.user_attrs.get("run_id", "")
    host = best.user_attrs.get("worker", {}).get("host", "the machine that trained it")
    test = f"python test.py -r {run / BEST}" if (run / BEST).is_file() \
        else f"its {BEST} is not in {run}: test it on {host}"  # trained on another machine, or moved
    return [*lines,
            f"Best: trial {best.number} ({run.name}), {metric} {_number(best.value)}; {_params(best.params)}",
            f"Test it:      {test}",
            f"Dashboard:    optuna-dashboard {dashboard_url}"
            + ("  (your password in place of ***)" if HIDDEN in dashboard_url else ""),
            f"TensorBoard:  tensorboard --logdir {log_root}  (HParams tab compares the trials)"]


def _params(params):
    return ", ".join(f"{k}={_value(v)}" for k, v in params.items())


def _value(value):
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _number(value):
    return "-" if value is None else f"{value:.6g}"
