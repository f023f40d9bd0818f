"""BaseTrainer: the epoch loop, monitoring, early stopping, checkpoints and resume."""
import logging
import signal
import sys
from abc import ABC, abstractmethod

import torch

from logger import TensorboardWriter
from logger.hparams import HParamsWriter
from logger.metrics_sink import MetricsSink
from logger.trackers.tracker_set import TrackerSet
from runs.checkpointer import Checkpointer
from runs.checks import check_history
from runs.files import HISTORY, PROVENANCE
from runs.folder import resume_command
from runs.history import history_with_row
from runs.monitor import Monitor
from runs.parts import RngStates, SchedulerState
from runs.report import best_so_far, epoch_block, summary_lines, write_epoch_scalars
from runs.sharded_parts import weight_parts
from runs.tracking import run_info
from utils import distributed as dist
from utils.checkpoint import unwrap_model
from utils.cpu_threads import RunThreads
from utils.errors import UserError
from utils.provenance import collect_provenance
from utils.sharding import is_sharded
from utils.signals import StopSignals, TrainingInterrupted


class BaseTrainer(ABC):
    """Base class for all trainers: subclasses implement `_train_epoch(epoch) -> dict`. The constructor only
    stores what it is given; `train()` restores the checkpoint, makes the run folders and trains."""
    # per-epoch <metric>/train|valid scalars (the template's Trainer); a classic trainer writes its own per step
    epoch_scalars = False

    def __init__(self, model, criterion, metric_ftns, optimizer, config, lr_scheduler=None, grad_scaler=None):
        self.config = config
        self.options = config.trainer_options
        self.logger = config.get_logger("trainer", self.options.verbosity)
        self.model = model
        self.raw_model = unwrap_model(model)  # what checkpoints hold: no DDP/compile wrappers
        self.criterion = criterion
        self.metric_ftns = metric_ftns
        self.optimizer = optimizer
        self.lr_scheduler = lr_scheduler
        self.grad_scaler = grad_scaler  # a GradScaler (a no-op unless fp16); its scale is part of the checkpoint
        self.threads = RunThreads(self.options.cpu_threads)  # a resume keeps the run's thread count

        self.epochs = self.options.epochs
        self.save_period = self.options.save_period
        self.monitor = Monitor(self.options.monitor, self.options.early_stop)
        self.start_epoch = 1
        self.last_epoch = 0
        self.global_step = 0
        self.batch_in_epoch = 0  # batches of the current epoch trained (a mid-epoch checkpoint records it)
        self.stop_signals = StopSignals()
        self.is_main = dist.is_main_process()
        self.run = config.run  # the run folder this trainer fills
        self.checkpointer = Checkpointer(self.run, config.config, self.options, self.logger,
                                         sharded=is_sharded(self.raw_model))
        self._register_parts()
        # callables `listener(epoch, log)`, called on every rank after each epoch is saved (trackers, search
        # pruning); one may raise to end training, after that epoch's checkpoint is safe
        self.epoch_listeners = [self._end_epoch_in_writer]
        # the writer is the metrics sink: every scalar goes to TensorBoard and each tracker (MLflow, W&B) as
        # peers, on rank 0 only; classic calls (set_step, add_scalar, ...) work on it
        trackers = TrackerSet(self.options.trackers if self.is_main else [], self.logger)
        tensorboard = (self.options.tensorboard or trackers.wants("tensorboard")) and self.is_main
        self.writer = MetricsSink(TensorboardWriter(config.log_dir, self.logger, tensorboard,
                                                    HParamsWriter(config.config), self._full_disk_hint), trackers)

    @property
    def checkpoint_dir(self):
        return self.config.save_dir

    def _register_parts(self):
        """What a checkpoint holds besides the position. A subclass registers its own parts (its data
        position, partial metrics) in its constructor: `self.checkpointer.register(key, part)`."""
        register = self.checkpointer.register
        # a sharded model's parts gather and scatter its shards (runs/sharded_parts.py); the file is the same
        weights, optimizer = weight_parts(self.raw_model, self.optimizer, self.config, self.checkpointer,
                                          self.run.note, lambda: self.config.resume)
        register("state_dict", weights)
        register("optimizer", optimizer)
        register("lr_scheduler", SchedulerState(self.lr_scheduler, optimizer) if self.lr_scheduler else None)
        register("monitor", self.monitor)
        enabled = self.grad_scaler is not None and self.grad_scaler.is_enabled()
        register("grad_scaler", self.grad_scaler if enabled else None)
        register("cpu_threads", self.threads)
        register("rng_states", RngStates(lambda: int(self.config["seed"]) + 1000 * self.start_epoch))

    @abstractmethod
    def _train_epoch(self, epoch):
        """Train one epoch; return a dict of averaged metrics (train and val_)."""

    def train(self):
        """Full training logic; raises TrainingInterrupted after saving on SIGINT/SIGTERM."""
        try:
            if self._start_run():
                self._train_epochs()
        finally:
            self.run.close(sys.exc_info()[1])  # a new run that a user error ended leaves no folder

    def _train_epochs(self):
        self.stop_signals.install()
        self.writer.open()  # before the first epoch, so its epoch_time is not TensorBoard's import
        try:
            for epoch in range(self.start_epoch, self.epochs + 1):
                try:
                    result = self._train_epoch(epoch)
                except TrainingInterrupted:
                    self._save_position(epoch)
                    self._stop(f"in epoch {epoch} after {self.batch_in_epoch} batches")
                log = {"epoch": epoch, **result}
                self._report_epoch(log)
                improved = self.monitor.update(log, epoch)
                stop = dist.any_rank(self.monitor.should_stop)
                self._save_epoch(epoch, improved, last=stop or epoch == self.epochs, log=log)
                for listener in self.epoch_listeners:
                    listener(epoch, log)
                if not stop and epoch < self.epochs and dist.any_rank(self.stop_signals.requested):
                    self._stop(f"after epoch {epoch}")  # a signal during validation or saving
                if stop:
                    self.logger.info(f"Validation performance didn't improve for {self.monitor.early_stop} "
                                     "epochs. Training stops.")
                    break
        finally:
            self.stop_signals.restore()
            self.writer.close(sys.exc_info()[1])  # the trackers' runs end FINISHED, KILLED or FAILED
        dist.barrier()  # rank 0 may still be writing checkpoints that code after train() reads
        self._report_end()

    def _full_disk_hint(self):
        """What a full disk's line advises: the command that continues this run (asked when it happens)."""
        return f"free space, then resume with {self.run.resume_command()}"

    def _log_nothing_to_train(self):
        if self.run.rerun is not None:  # a search's retry of a trained run: it only records the run's result
            self.logger.info(f"The run has trained its {self.epochs} epochs already; its result is recorded as it is")
            return
        more = f"-o trainer.epochs={self.last_epoch + self.epochs}"
        self.logger.warning(f"Nothing to train: the checkpoint has trained {self.last_epoch} epochs and "
                            f"trainer.epochs is {self.epochs}. To train further: "
                            f"{resume_command(self.config.resume.parent, more)}")

    def _start_run(self):
        """Restore the checkpoint and check the run, then make the folders; False: nothing left to train."""
        checkpoint = self.run.saved_checkpoint
        if checkpoint is not None:
            self._restore(checkpoint)
            self._log_resumed()
            check_history(self.run.folder, self.start_epoch - 1)  # damaged: one line now, not after an epoch
        if self.start_epoch > self.epochs:
            self._log_nothing_to_train()
            return False
        self.check_before_training()
        self.writer.trackers.connect(self.options.save_dir, self.config["name"])  # before any run folder
        self.config.init_run()  # the folder, its lock, config.json, and the log file
        self.writer.log_dir = str(self.config.log_dir)  # the run id may have gained a suffix
        provenance = {}  # asks git once per start: provenance.json and the trackers' git_commit tag
        if self.is_main:
            provenance = collect_provenance(next(self.raw_model.parameters(), torch.empty(0)).device, self.run.about)
            self.run.write_json(PROVENANCE, provenance)
        if self.writer.trackers:
            self.writer.trackers.open_run(run_info(self.config, dist.get_world_size(), provenance.get("git")))
        return True

    def check_before_training(self):
        """Refuse, before any folder is made, what would only fail later (UserError, one line)."""
        produced = self._metric_names()
        if self.monitor.enabled and produced is not None and self.monitor.metric not in produced:
            raise UserError(f"trainer.monitor watches '{self.monitor.metric}', which this run does not produce; "
                            f"monitor one of: {', '.join(produced)} (val_ metrics need a validation split), "
                            "or set trainer.monitor to \"off\"")

    def _metric_names(self):
        """The metrics each epoch's log will hold, when known before training (None: unknown)."""
        return None

    def _report_epoch(self, log):
        for line in epoch_block(log):
            self.logger.info(line)
        if self.is_main and self.epoch_scalars:
            write_epoch_scalars(self.writer, log)
        self.last_epoch = log["epoch"]

    def _end_epoch_in_writer(self, epoch, log):
        self.writer.end_epoch(epoch, log, best_so_far(self.monitor, self.checkpoint_dir))

    def _report_end(self):
        for line in summary_lines(self.monitor, self.checkpoint_dir, self.config.log_dir, self.last_epoch, self.epochs,
                                  self.run.rerun):
            self.logger.info(line)
        for line in self.writer.trackers.where:  # each tracker's run, and the command to look at it
            self.logger.info(line)

    # ---- checkpoints: the Checkpointer saves and loads; the trainer says where it is ----------
    def _position(self, resume_batch=0):
        return {"arch": type(self.raw_model).__name__, "resume_batch": resume_batch, "global_step": self.global_step}

    def _save_epoch(self, epoch, improved, last, log):
        """The epoch as one commit with its metrics.csv row; a kill leaves all of it or none."""
        def metrics():
            return [(HISTORY, history_with_row(self.checkpoint_dir / HISTORY, log))]
        self.checkpointer.save_epoch(epoch, improved, last, metrics, **self._position())

    def _save_position(self, epoch):
        """model_latest.pth with the exact position inside `epoch` (a collective: every rank calls it)."""
        if self.is_main:
            self.writer.flush()  # first: trackers then hold every step the checkpoint holds, even after a kill
        self.checkpointer.save_position(epoch=epoch - 1, **self._position(resume_batch=self.batch_in_epoch))

    def _stop(self, when):
        """End the run after its state is saved, saying where it stopped and how to resume."""
        stop = TrainingInterrupted(self.stop_signals.signum or signal.SIGTERM)
        if self.is_main:
            self.logger.warning(f"Stopped by {stop} {when}; state saved. "
                                f"Resume with: {self.run.resume_command()}")
        raise stop

    def _restore(self, checkpoint):
        """Put back the position and every registered part from `checkpoint`."""
        self.run.note(logging.INFO, f"Loading checkpoint: {self.config.resume} ...")
        if checkpoint["config"]["arch"] != self.config["arch"]:
            self.run.note(logging.WARNING, "Warning: Architecture configuration given in config file is different "
                          "from that of checkpoint. This may yield an exception while state_dict is being loaded.")
        self.last_epoch = checkpoint["epoch"]
        self.start_epoch = self.last_epoch + 1
        self.global_step = checkpoint.get("global_step", 0)
        self.checkpointer.load(checkpoint)
        if self.threads.note:
            self.run.note(logging.INFO, self.threads.note)
        loader = getattr(self, "data_loader", None)
        if hasattr(loader, "set_epoch"):  # a classic trainer's loop: continue with this epoch's shuffle
            loader.set_epoch(self.start_epoch)

    def _log_resumed(self):
        where = f"epoch {self.start_epoch}" + (f", batch {self.batch_in_epoch + 1}" if self.batch_in_epoch else "")
        restart = self.run.plan.restart
        restarted = f" (torchrun restart {restart})" if restart is not None else ""
        self.run.note(logging.INFO, f"Checkpoint {self.config.resume} loaded{restarted}. Resume training from {where}")
