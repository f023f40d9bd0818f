"""BaseTrainer: the epoch loop, monitoring, early stopping, checkpoints and resume."""
import logging
import signal
from abc import ABC, abstractmethod

import torch

from base.checkpoint_files import LATEST, CheckpointFiles
from base.history import append_epoch_row
from base.monitor import Monitor
from base.reporting import epoch_block, summary_lines, write_epoch_scalars
from logger import TensorboardWriter
from utils import distributed as dist
from utils.checkpoint import check_state_dict_matches, strip_prefixes, unwrap_model
from utils.errors import UserError
from utils.provenance import collect_provenance
from utils.seed import get_rng_state, set_rng_state
from utils.signals import StopSignals, TrainingInterrupted


class BaseTrainer(ABC):
    """Base class for all trainers: subclasses implement `_train_epoch(epoch) -> dict`.

    The constructor only stores what it is given; `train()` restores the
    checkpoint being resumed (if any), then makes the run folders and trains.
    A subclass with state of its own (a data position, partial metrics) returns
    it from `_extra_state()` and gets it back in `_load_extra_state(state)`.
    """

    def __init__(self, model, criterion, metric_ftns, optimizer, config, lr_scheduler=None,
                 grad_scaler=None):
        self.config = config
        self.options = config.trainer_options
        self.logger = config.get_logger("trainer", self.options.verbosity)
        self.model = model
        self.raw_model = unwrap_model(model)  # what checkpoints hold: no DDP/compile wrappers
        self.criterion = criterion
        self.metric_ftns = metric_ftns
        self.optimizer = optimizer
        self.lr_scheduler = lr_scheduler
        self.grad_scaler = grad_scaler  # fp16 only; its scale is part of the checkpoint

        self.epochs = self.options.epochs
        self.save_period = self.options.save_period
        self.monitor = Monitor(self.options.monitor, self.options.early_stop)
        self.start_epoch = 1
        self.last_epoch = 0
        self.global_step = 0
        self.stop_signals = StopSignals()
        self.is_main = dist.is_main_process()
        self.resume_log = []  # (level, message): written once the run's info.log exists
        self.writer = TensorboardWriter(config.log_dir, self.logger, self.options.tensorboard and self.is_main)

    @property
    def checkpoint_dir(self):
        return self.config.save_dir

    @abstractmethod
    def _train_epoch(self, epoch):
        """Train one epoch; return a dict of averaged metrics (train and val_)."""

    def train(self):
        """Full training logic; raises TrainingInterrupted after saving on SIGINT/SIGTERM."""
        if not self._start_run():
            return
        self.stop_signals.install()
        self.writer.open()  # before the first epoch, so its epoch_time is not TensorBoard's import
        try:
            for epoch in range(self.start_epoch, self.epochs + 1):
                try:
                    result = self._train_epoch(epoch)
                except TrainingInterrupted:
                    self._save_interrupted(epoch)
                    raise
                log = {"epoch": epoch, **result}
                self._report_epoch(log)
                improved = self.monitor.update(log, epoch)
                stop = dist.any_rank(self.monitor.should_stop)
                self._save_epoch(epoch, improved, last=stop or epoch == self.epochs)
                if not stop and epoch < self.epochs and dist.any_rank(self.stop_signals.requested):
                    self._stop_after_epoch(epoch)
                if stop:
                    self.logger.info(f"Validation performance didn't improve for {self.monitor.early_stop} "
                                     "epochs. Training stops.")
                    break
        finally:
            self.stop_signals.restore()
            self.writer.close()
        dist.barrier()  # rank 0 may still be writing checkpoints that code after train() reads
        self._report_end()

    def _start_run(self):
        """Restore the checkpoint and check the run (before any folder is made), then make the folders.

        Returns False when a resumed run has no epoch left to train.
        """
        if self.config.checkpoint is not None:
            self._resume_checkpoint(self.config.checkpoint)
        if self.start_epoch > self.epochs:
            self.logger.warning(f"Nothing to train: the run is complete ({self.epochs} of {self.epochs} epochs). "
                                f"To train further, resume with -o trainer.epochs=N, N > {self.epochs}")
            return False
        self._check_before_training()
        if not self.config.run_started:
            self.config.init_run()
        self.checkpoints = CheckpointFiles(self.checkpoint_dir, self.save_period, self.options.keep_last, self.logger)
        self.writer.log_dir = str(self.config.log_dir)  # the run id may have gained a suffix
        for level, message in self.resume_log:
            self.logger.log(level, message)
        if self.is_main:
            device = next(self.raw_model.parameters(), torch.empty(0)).device
            self.config.write_run_file("provenance.json", collect_provenance(device))
        return True

    def _check_before_training(self):
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
        if self.is_main:
            append_epoch_row(self.checkpoint_dir / "metrics.csv", log)
            if not self.writer.classic_steps:  # a classic trainer writes its own <metric>/train scalars
                write_epoch_scalars(self.writer, log)
        self.last_epoch = log["epoch"]

    def _report_end(self):
        for line in summary_lines(self.monitor, self.checkpoint_dir, self.config.log_dir, self.last_epoch):
            self.logger.info(line)

    # ---- checkpoints -------------------------------------------------------
    def _checkpoint(self, epoch, resume_batch=0, extra=None):
        """Everything needed to continue exactly, as plain data (weights_only-safe)."""
        rng_states = dist.all_gather_object(get_rng_state())  # every rank's, collective
        return {
            "arch": type(self.raw_model).__name__,
            "epoch": epoch,
            "resume_batch": resume_batch,
            "global_step": self.global_step,
            "state_dict": strip_prefixes(self.raw_model.state_dict()),
            "optimizer": self.optimizer.state_dict(),
            "lr_scheduler": self.lr_scheduler.state_dict() if self.lr_scheduler is not None else None,
            "grad_scaler": self.grad_scaler.state_dict() if self.grad_scaler is not None else None,
            "monitor": self.monitor.state_dict(),
            "monitor_best": float(self.monitor.best),
            "rng_states": rng_states,
            "world_size": dist.get_world_size(),
            "config": self.config.config,
            **(extra or {}),
        }

    def _save_epoch(self, epoch, improved, last):
        state = self._checkpoint(epoch, extra=self._extra_state())
        if self.is_main:
            self.checkpoints.save_epoch(state, epoch, improved, last)

    def _save_interrupted(self, epoch):
        state = self._checkpoint(epoch - 1, resume_batch=self._batches_done(), extra=self._extra_state())
        if self.is_main:
            self.checkpoints.write(state, [LATEST])
            signame = TrainingInterrupted(self.stop_signals.signum)
            self.logger.warning(f"Stopped by {signame} in epoch {epoch} after {state['resume_batch']} "
                                f"batches; state saved. Resume with: python train.py -r {self.checkpoint_dir / LATEST}")

    def _stop_after_epoch(self, epoch):
        """A signal came during validation or saving: the epoch's checkpoint is where to resume."""
        stop = TrainingInterrupted(self.stop_signals.signum or signal.SIGTERM)
        if self.is_main:
            self.logger.warning(f"Stopped by {stop} after epoch {epoch}; state saved. "
                                f"Resume with: python train.py -r {self.checkpoint_dir / LATEST}")
        raise stop

    def _extra_state(self):
        """Subclass state for the checkpoint (data position, partial metrics); plain data only."""
        return {}

    def _load_extra_state(self, state):
        """Restore what `_extra_state()` returned (`state` holds its keys); called on resume."""
        return None  # nothing extra in the base

    def _batches_done(self):
        """Batches of the current epoch already trained (for a mid-epoch checkpoint)."""
        return 0

    def _resume_checkpoint(self, checkpoint):
        """Restore model, optimizer, scheduler, scaler, monitor, RNG and position."""
        resume_path = self.config.resume
        self.resume_log.append((logging.INFO, f"Loading checkpoint: {resume_path} ..."))
        state_dict = strip_prefixes(checkpoint["state_dict"])
        check_state_dict_matches(self.raw_model, state_dict, resume_path)
        if checkpoint["config"]["arch"] != self.config["arch"]:
            self.resume_log.append((logging.WARNING, "Warning: Architecture configuration given in config file is "
                                    "different from that of checkpoint. This may yield an exception while "
                                    "state_dict is being loaded."))
        self.raw_model.load_state_dict(state_dict)
        optimizer_resumed = checkpoint["config"]["optimizer"]["type"] == self.config["optimizer"]["type"]
        if not optimizer_resumed:
            self.resume_log.append((logging.WARNING, "Warning: Optimizer type given in config file is different "
                                    "from that of checkpoint. Optimizer parameters not being resumed."))
        else:
            self._load_optimizer(checkpoint["optimizer"])
        self._restore_scheduler(checkpoint, optimizer_resumed)
        if self.grad_scaler is not None and checkpoint.get("grad_scaler") is not None:
            self.grad_scaler.load_state_dict(checkpoint["grad_scaler"])
        if "monitor" in checkpoint:
            self.monitor.load_state_dict(checkpoint["monitor"])
        self.start_epoch = checkpoint["epoch"] + 1
        self.last_epoch = checkpoint["epoch"]
        self.global_step = checkpoint.get("global_step", 0)
        self._restore_rng(checkpoint.get("rng_states"))
        loader = getattr(self, "data_loader", None)
        if hasattr(loader, "set_epoch"):  # a classic trainer's loop: continue with this epoch's shuffle
            loader.set_epoch(self.start_epoch)
        self._load_extra_state(checkpoint)
        done = self._batches_done()
        where = f"epoch {self.start_epoch}" + (f", batch {done + 1}" if done else "")
        self.resume_log.append((logging.INFO, f"Checkpoint {resume_path} loaded. Resume training from {where}"))

    def _load_optimizer(self, state):
        """Restore the optimizer; when fine-tuning (-c with -r), keep the new config's lr and settings."""
        chosen = [{k: v for k, v in group.items() if k != "params"} for group in self.optimizer.param_groups]
        self.optimizer.load_state_dict(state)
        if not self.config.continue_run:
            for group, settings in zip(self.optimizer.param_groups, chosen, strict=True):
                group.update(settings)

    def _restore_scheduler(self, checkpoint, optimizer_resumed):
        """Continue the scheduler's schedule, unless it or its optimizer is a new one.

        A scheduler's state holds its optimizer's base lrs and its own type's
        settings, so a changed optimizer or scheduler type starts it afresh.
        """
        if self.lr_scheduler is None or checkpoint.get("lr_scheduler") is None:
            return
        old_type = (checkpoint["config"].get("lr_scheduler") or {}).get("type")
        if optimizer_resumed and old_type == (self.config.get("lr_scheduler") or {}).get("type"):
            self.lr_scheduler.load_state_dict(checkpoint["lr_scheduler"])
        else:
            self.resume_log.append((logging.WARNING, "Warning: the optimizer or lr_scheduler type differs from "
                                    "the checkpoint's; the lr_scheduler starts afresh."))

    def _restore_rng(self, rng_states):
        if not rng_states:
            return
        rank = dist.get_rank()
        if len(rng_states) == dist.get_world_size():
            set_rng_state(rng_states[rank])
        else:  # another number of processes: streams cannot match; keep them distinct per rank
            torch.manual_seed(int(self.config["seed"]) + rank + 1000 * self.start_epoch)
