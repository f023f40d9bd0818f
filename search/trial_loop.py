"""One worker's loop over a study (tune.py): ask a trial, train it, tell its outcome, until the study has its
trials or a stop (SIGTERM, Ctrl-C) arrives. Optuna's own `study.optimize` would turn a stop into a failed
trial with a traceback and leave no way to tell a stop just after a trial from one inside it; here:

- a trial ends COMPLETE (a finite value), PRUNED (the pruner, or a value that is NaN or inf: it diverged),
  or FAIL (a config error, which ends the search in one line; or its run is busy with another job, which
  the worker leaves to that job and moves on);
- a stop inside a trial queues that trial again (the next start continues its run); a stop at any other
  moment ends the search after the trial it was in is told, and never queues a told trial;
- a full disk (SaveFailed, exit 74) queues the trial again as a stop does: the same command continues it;
- a worker ends once the last trials wanted all run in other workers: the study finishes exactly `wanted`;
- a trial another worker revived meanwhile (search/revived.py) is left to its retry in one line, untold;
- a killed worker leaves its trial RUNNING, for the heartbeat or the next start on this machine to revive;
- of workers reviving one dead trial, or taking one queued retry, at the same moment, one does (search/claim.py);
- a database outage is waited out (search/outage.py); one longer than tune.storage_wait stops the worker in
  one line and leaves its trial RUNNING, like a kill, but noted in its run folder: its revival counts no kill.
"""
import contextlib
import gc
import math
import signal

import optuna
from optuna.trial import TrialState

from runs.lock import RunBusy
from search.claim import start_if_waiting
from search.heartbeat import Heartbeat
from search.outage import StorageOutage
from search.recovery import fail_stale_trials, requeue_if_running
from search.report import DONE
from search.revived import RevivedElsewhere, revived_line, unless_revived
from search.worker_exit import record_outage_exit
from utils.atomic import SaveFailed
from utils.errors import UserError, print_line
from utils.signals import TrainingInterrupted

STOPS = (TrainingInterrupted, KeyboardInterrupt)


def run_trials(study, wanted, objective, stops, after_trial, runs_dir):
    """Ask and train trials until `wanted` are COMPLETE or PRUNED; `stops` (a StopSignals) ends the loop between
    trials with TrainingInterrupted. `objective(trial)` returns the trial's value (or raises); `runs_dir` holds the
    trials' runs, whose locks say which stale-looking trials are still alive."""
    with _optimizing(study):
        _loop(study, wanted, objective, stops, after_trial, runs_dir)


@contextlib.contextmanager
def _optimizing(study):
    """Tell Optuna its study is in an optimize loop, as study.optimize does: a sampler may then end the study
    (GridSampler, its grid done: study.stop())."""
    study._stop_flag = False
    study._thread_local.in_optimize_loop = True
    try:
        yield
    finally:
        study._thread_local.in_optimize_loop = False


def _loop(study, wanted, objective, stops, after_trial, runs_dir):
    while _finished(study) < wanted and not study._stop_flag:
        if stops.requested:
            raise _stopped_between(stops.signum)
        fail_stale_trials(study, runs_dir)  # dead workers on other machines: their trials are queued again, once
        if _left_to_others(study, wanted):
            break
        trial = ask(study)
        try:
            with Heartbeat(study._storage, trial):
                state, value = _outcome(trial, objective)
            with unless_revived(trial):
                study.tell(trial, value, state=state)
        except RevivedElsewhere:  # its retry continues the run, finds it trained (or not yet) and records it
            print_line(revived_line(trial))
            gc.collect()
            continue
        except STOPS:
            if requeue_if_running(study, trial._trial_id):
                print_line(f"trial {trial.number} stopped; its run's state is saved: run the same command again "
                           "to continue it.")
                raise
            raise _stopped_between(stops.signum or signal.SIGINT) from None  # the trial was told: not queued again
        except StorageOutage:  # nothing can be told; the next start must not count it as a kill of the trial
            record_outage_exit(runs_dir, trial)
            raise
        except SaveFailed as full:  # a full disk: the run stays as of its last save, continued once space is freed
            requeue_if_running(study, trial._trial_id)  # queued as after a stop: not a kill, no retry used up
            full.args = (f"trial {trial.number} ({trial.user_attrs.get('run_id', '?')}): {full}",)
            raise
        after_trial(study, study._storage.get_trial(trial._trial_id))
        gc.collect()  # a trial's model and loaders are gone before the next trial builds its own
    if stops.requested:
        raise _stopped_between(stops.signum)


def _left_to_others(study, wanted):
    """Whether every trial still wanted is already RUNNING in another worker (and none is queued): a new one would
    make the study finish more trials than `wanted`. This worker then ends, with a line that says so."""
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    if _finished(study) + len(running) < wanted or study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        return False
    print(f"the study's last trials ({', '.join(str(t.number) for t in running)}) run in other workers: this worker "
          "ends (one of them stopped or killed is continued by the same command)", flush=True)
    return True


def ask(study):
    """study.ask(), a queued trial (a retry) taken by one worker only: Optuna's pop of its queue checks the
    state, then writes it, and on SQLite several workers asking at once each took the same retry."""
    study._thread_local.cached_all_trials = None  # read the storage afresh, as study.ask does
    for queued in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        if start_if_waiting(study._storage, queued._trial_id):
            return optuna.Trial(study, queued._trial_id)
    return optuna.Trial(study, study._storage.create_new_trial(study._study_id))


def _stopped_between(signum):
    print_line("The search stopped between trials, each of them recorded; run the same command again to continue "
               "the study.")
    return TrainingInterrupted(signum)


def _outcome(trial, objective):
    """(state, value) of one trial; a config error is told FAIL and raised, a stop or a full disk propagates
    untold."""
    try:
        value = objective(trial)
    except optuna.TrialPruned:
        return TrialState.PRUNED, None
    except (StorageOutage, RevivedElsewhere):
        raise  # nothing can be told: the trial stays RUNNING, or another worker queued its retry
    except SaveFailed:
        raise  # not the trial's fault: _loop queues it again
    except RunBusy as busy:
        trial.set_user_attr("note", f"left to the job that trains its run: {busy}")
        return TrialState.FAIL, None
    except UserError as err:
        err.args = (f"trial {trial.number} ({trial.user_attrs.get('run_id', '?')}): {err}",)
        trial.set_user_attr("note", str(err))
        trial.study.tell(trial, state=TrialState.FAIL)
        raise
    if value is None or not math.isfinite(value):  # no epoch gave a finite value: never COMPLETE, never best
        trial.set_user_attr("note", "diverged: no epoch gave a finite monitored value, so it is pruned")
        return TrialState.PRUNED, None
    return TrialState.COMPLETE, value


def _finished(study):
    return len(study.get_trials(deepcopy=False, states=DONE))
