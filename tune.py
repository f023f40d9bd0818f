"""Search hyperparameters with Optuna: python tune.py -c search.json (see docs/search.md).

Trial k of study S is the named run S-trial<k>, trained by train.py's own code: it resumes, tests
and logs like any run. The study lives in a database that any number of workers share; under
torchrun rank 0 talks to it and the other ranks follow its decisions.
"""
import utils.before_torch  # noqa: F401  (first: OpenMP reads its wait policy when torch loads it)

# isort: split
import argparse
import os
import sys
import typing

import optuna
from optuna.trial import TrialState

import train
from logger.logger import once_on_console
from parse_config import ConfigParser, run_options
from runs.entry import run_entry
from runs.files import logs_of, runs_of
from runs.folder import launcher, quote
from runs.lock import RunBusy
from runs.start import StartRequest, decide_start
from search.pruning import PruneCheck
from search.recovery import retry_after_kill, revive_dead_trials, run_number, this_worker
from search.report import DONE, progress_line, summary_lines
from search.revived import RevivedElsewhere, unless_revived
from search.sampler import build_pruner, build_sampler
from search.space import first_point, read_tune_section, suggest, with_values
from search.storage import open_storage, open_study, storage_url
from search.study_base import check_same_base
from search.study_file import check_study_file
from search.trial_loop import run_trials
from search.trial_runs import RecordRun, check_trial_folders, check_trial_run
from utils import distributed as dist
from utils.atomic import SaveFailed
from utils.config.overrides import updated_config, with_known_keys
from utils.errors import UserError
from utils.redact import redact
from utils.run_names import study_name
from utils.signals import StopSignals, TrainingInterrupted
from utils.util import read_json


class Search:
    """One worker's part of the study: the base config, and how to train a trial of it."""

    def __init__(self, args, device):
        # train.py's own flags (its CustomArgs included) and -o rules change the base config
        config = updated_config(read_json(args.config), {opt.target: getattr(args, opt.dest) for opt in args.custom},
                                with_known_keys(args.override))
        self.tune = read_tune_section(config, args.study, args.storage, args.trials)
        self.base = {k: v for k, v in config.items() if k != "tune"}
        self.device = device
        options = run_options(self.base)
        if options.monitor == "off":
            raise UserError("tune.py optimizes trainer.monitor, which is \"off\"; set it, e.g. "
                            "-o trainer.monitor=\"min val_loss\"")
        direction, self.metric = options.monitor.split()
        self.direction = {"min": "minimize", "max": "maximize"}[direction]
        self.runs_dir = runs_of(options.save_dir, self.base["name"])
        self.logs_dir = logs_of(options.save_dir, self.base["name"])
        self.url = storage_url(self.tune.storage, options.save_dir, self.tune.study)  # to connect; never shown
        self.shown_url = redact(self.url)  # to print and store: a password is ***
        self.sampler, self.pruner = build_sampler(self.tune.sampler, self.tune.space), build_pruner(self.tune.pruner)
        # what continues a stopped trial: this very command (train.py -r would train it outside the study)
        self.rerun = " ".join([launcher(), "tune.py", *map(quote, args.argv)]) + " (the same command)"
        self.in_trial = False  # under torchrun: whether the other ranks are inside a trial, not waiting

    def check_before_trials(self):
        """Build every part once, as a trial would: a monitor the run never produces, or any other
        config error, is one line before the study has a trial."""
        trainer = train.build_trainer(ConfigParser(with_values(self.base, first_point(self.tune.space))), self.device)
        trainer.check_before_training()

    def train_trial(self, plan, trial=None):
        """Train (or continue) the run of one trial; return (best monitored value, epochs done, the signal of a
        stop that came too late to end training, else None)."""
        config = with_values(self.base, plan["values"])
        config["tune"] = {"study": self.tune.study, "trial": plan["trial"]}
        # the named run of this trial, new or continued, decided as train.py --run_id decides it
        start = decide_start(StartRequest(given=config, run_id=plan["run_id"]))
        parsed = ConfigParser(start.config, start.resume, plan=start)
        parsed.run.about["tune"] = {**config["tune"], "optuna_trial": plan["number"], "storage": self.shown_url}
        parsed.run.rerun = self.rerun
        trainer = train.build_trainer(parsed, self.device, plan.get("workers_here", 1))
        trainer.epoch_listeners.append(RecordRun(trial, parsed.run))  # the trial's run, by its identity
        trainer.epoch_listeners.append(PruneCheck(trial, self.metric, trainer.epochs))
        trainer.writer.hparams.searched = list(plan["values"])  # HParams: the searched keys, not the constants
        trainer.train()  # the run's lock is held from its start to its end
        return trainer.monitor.best, max(trainer.last_epoch, trainer.start_epoch - 1), trainer.stop_signals.signum


def lead(search):
    """Rank 0: run the study against the storage, sending each trial to the other ranks."""
    tune = search.tune
    check_study_file(search.url, search.shown_url)  # a file that is not a database, or read-only: one line now
    on_dead = retry_after_kill(search.runs_dir)  # a worker stopped by a storage outage left a note there
    storage = open_storage(search.url, tune.heartbeat_interval, tune.grace_period, on_dead,
                           tune.storage_wait)
    study = open_study(storage, tune.study, search.direction, search.sampler, search.pruner, search.metric)
    check_same_base(study, search.shown_url, search.base, f"{search.direction[:3]} {search.metric}", tune.space)
    check_trial_folders(study, search.runs_dir, search.shown_url)  # S-trial<k> of a same-named study elsewhere
    revive_dead_trials(study, search.runs_dir, on_dead)  # each prints what it did
    stops = StopSignals().install()  # a stop between trials is kept, and acted on once no trial is left half-told

    def objective(trial):
        if stops.requested:  # before its run starts: the trial is queued again for the next start
            raise TrainingInterrupted(stops.signum)
        with unless_revived(trial):  # revived before its run started: no rank has heard of it yet
            values = suggest(trial, tune.space)
            plan = {"values": values, "trial": run_number(trial), "number": trial.number,
                    "run_id": f"{tune.study}-trial{run_number(trial)}"}
            # first: a trial refused here claims no folder (check_trial_folders reads the claims)
            check_trial_run(trial, search.runs_dir / plan["run_id"], retry=plan["trial"] != trial.number)
            trial.set_user_attr("run_id", plan["run_id"])
            trial.set_user_attr("worker", {**this_worker(), "trial": trial.number})
        plan["workers_here"] = workers_here(study)  # they share this machine's cores
        dist.broadcast_object(("trial", plan))
        search.in_trial = True
        try:
            best, epochs, stopped = search.train_trial(plan, trial)
        except (optuna.TrialPruned, RunBusy, RevivedElsewhere):
            search.in_trial = False  # every rank ended it alike and waits for the next trial
            raise
        search.in_trial = False
        stops.signum = stops.signum or stopped  # a stop in the last epoch's validation or save ends the search
        with unless_revived(trial):
            trial.set_user_attr("epochs", epochs)
        return best

    def after_trial(study, trial):
        print(progress_line(study, trial, search.metric, tune.trials), flush=True)

    done = len(study.get_trials(deepcopy=False, states=DONE))
    print(f"Study {tune.study} in {search.shown_url}: {done} of {tune.trials} trials done", flush=True)
    try:
        run_trials(study, tune.trials, objective, stops, after_trial, search.runs_dir)
    finally:
        stops.restore()
    for line in summary_lines(study, search.metric, search.runs_dir, search.shown_url,
                              search.logs_dir):
        print(line, flush=True)


def workers_here(study):
    """Running trials of the study on this machine, this one included: one per worker here."""
    host = this_worker()["host"]
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    return max(1, sum(trial.user_attrs.get("worker", {}).get("host") == host for trial in running))


def follow(search):
    """Ranks other than 0: train each trial rank 0 sends, until it says the study is over."""
    while True:
        kind, plan = dist.broadcast_object(None)
        if kind == "end":
            return plan
        try:
            search.train_trial(plan)
        except (optuna.TrialPruned, RunBusy, RevivedElsewhere):
            pass  # rank 0 ended the trial alike and sends the next one


def main(argv=None, device=None):
    with once_on_console():  # the model printout and resolved config: once per study, not per trial
        run_study(parse_args(argv), device)


def run_study(args, device):
    end_if_restarted_after_full_disk()
    search = Search(args, device)
    search.check_before_trials()
    if not dist.is_main_process():
        code = follow(search)
        if code:
            sys.exit(code)
        return
    code = 1
    try:
        lead(search)
        code = 0
    except (UserError, TrainingInterrupted) as err:
        code = err.exit_code
        if isinstance(err, SaveFailed):  # a restart by torchrun would fail the same way: the next group ends at once
            dist.record_job_stop(str(err))
        raise
    finally:
        if dist.is_distributed() and not search.in_trial:  # the others wait for a word: the study is over
            dist.broadcast_object(("end", code))


def end_if_restarted_after_full_disk():
    """A group torchrun restarted after a full disk ended the last one: it ends at once (exit 74), rank 0 in
    one line, instead of taking the trial's retry to fail it again at its next save."""
    why = dist.job_stop()
    if why is None:
        return
    if not dist.is_main_process():
        sys.exit(SaveFailed.exit_code)  # rank 0's line says why
    raise SaveFailed(f"{why} (this is torchrun's restart of that job: it ends at once, a restart frees no space)")


def parse_args(argv=None):
    args = argparse.ArgumentParser(description="Hyperparameter search: each trial is a named run (see docs/search.md)")
    args.add_argument("-c", "--config", required=True, help="config file with a 'tune' section")
    args.add_argument("-d", "--device", default=None, help="indices of GPUs to enable (default: all)")
    args.add_argument("-o", "--override", action="append", default=[], metavar="KEY.PATH=VALUE",
                      help="change the base config, e.g. -o trainer.epochs=3 (repeatable)")
    custom = [(opt, args.add_argument(*opt.flags, default=None, type=opt.type,
                                      help=f"sets {opt.target.replace(';', '.')}").dest)
              for opt in train.custom_args()]  # train.py's flags, those a user added included
    args.add_argument("--trials", type=train.positive_int, help="finished trials wanted, over all workers")
    args.add_argument("--storage", help="database URL, e.g. postgresql://user@host/db (default: SQLite file)")
    args.add_argument("--study", type=study_name, help="study name (default: tune.study or the config's name)")
    args.error = lambda message: args.exit(2, f"error: {message}; see python tune.py --help\n")
    parsed = args.parse_args(argv)
    parsed.argv = sys.argv[1:] if argv is None else list(argv)
    parsed.custom = [CustomValue(opt.target, dest) for opt, dest in custom]
    if parsed.device is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = parsed.device
    return parsed


class CustomValue(typing.NamedTuple):
    target: str  # the config key path a flag sets ("optimizer;args;lr")
    dest: str  # where argparse put its value


def cli():
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # tune.py prints its own line per trial
    device = dist.init_distributed()  # None unless launched by torchrun
    run_entry(lambda: main(device=device))


if __name__ == "__main__":
    cli()
