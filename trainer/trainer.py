"""Trainer: one epoch of training and validation, read top to bottom."""
import logging
import math
import time
from contextlib import nullcontext
from functools import partial

import torch
from torch.nn.parallel import DistributedDataParallel

from base import BaseTrainer
from base.batch_transform import defer_batch_transform
from trainer.batch_stream import BatchStream
from trainer.ema import AveragedWeights
from trainer.evaluation import evaluate, to_device
from trainer.fixed_batches import FixedBatches
from trainer.profiling import ProfileWindow
from trainer.progress import EpochProgress, use_progress_bar
from utils import distributed as dist
from utils.errors import UserError
from utils.metric_tracker import MetricTracker, RankShares, metric_name, update_metrics
from utils.model_input import forward
from utils.sharding import is_sharded, sync_buffers
from utils.signals import TrainingInterrupted

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class Trainer(BaseTrainer):
    """Trains epoch by epoch, or `len_epoch` batches per epoch when given (iteration-based)."""
    epoch_scalars = True

    def __init__(self, model, criterion, metric_ftns, optimizer, config, device,
                 data_loader, valid_data_loader=None, lr_scheduler=None, len_epoch=None):
        opts = config.trainer_options
        # fp16 needs loss scaling against underflow; bf16 has fp32's range and does not (disabled: a no-op)
        scaler = torch.amp.GradScaler(device.type, enabled=opts.amp == "fp16")
        super().__init__(model, criterion, metric_ftns, optimizer, config, lr_scheduler, scaler)
        self.device = device
        if opts.overfit_batches:  # the same few batches, unshuffled, to train and to validate on
            data_loader = valid_data_loader = FixedBatches(data_loader, opts.overfit_batches)
        self.data_loader = data_loader
        self.stream = BatchStream(data_loader)
        self.len_epoch = len_epoch or opts.len_epoch  # None: one pass over the data per epoch
        self.valid_data_loader = valid_data_loader
        # the loader's batch step (uint8 -> normalised float) runs here, after the copy to the device
        self.train_transform = defer_batch_transform(data_loader)
        self.do_validation = valid_data_loader is not None
        self.train_metrics = MetricTracker("loss", *(metric_name(m) for m in metric_ftns))
        self.log_step = opts.log_step or max(1, int(math.sqrt(data_loader.batch_size or 1)))
        self.accumulate = opts.accumulate_steps
        self.clip_grad_norm = opts.clip_grad_norm
        self.interval = self.checkpointer.interval  # when to save mid-epoch
        self.per_batch_scheduler = (config.get("lr_scheduler") or {}).get("step") == "batch"
        self.show_bar = use_progress_bar(opts.verbosity)
        self.is_ddp = isinstance(model, DistributedDataParallel)
        self.is_sharded = is_sharded(self.raw_model)  # FSDP2: validation runs the sharded model on every rank
        self.eval_model = model.module if self.is_ddp else model  # no DDP collectives in validation
        self.autocast = partial(torch.autocast, device.type, dtype=AUTOCAST_DTYPES[opts.amp]) \
            if opts.amp in AUTOCAST_DTYPES else nullcontext
        self.profiler = None  # a ProfileWindow while trainer.profile records batches
        # the data position, and every rank's partial sums of an unfinished epoch
        self.checkpointer.register("data_stream", self.stream)
        self.checkpointer.register("train_metrics", RankShares(self.train_metrics))
        # trainer.ema: an average of the weights beside them (None: off), saved and resumed bit for bit
        self.ema = AveragedWeights.from_option(opts.ema, self.raw_model, self.run.note)
        self.checkpointer.register("ema", self.ema)

    def _train_epochs(self):
        if self.options.overfit_batches:
            self.logger.info(f"trainer.overfit_batches: training and validating on the same "
                             f"{len(self.data_loader)} batches, unshuffled")
        if self.is_main:  # rank 0 profiles, the other ranks train as usual
            self.profiler = ProfileWindow.start(self.options.profile, self.config.log_dir, self.global_step + 1,
                                                self.device.type, self.logger)
        try:
            super()._train_epochs()
        finally:
            if self.profiler is not None:  # training ended inside the window
                self.profiler.close()
                self.profiler = None

    def _train_epoch(self, epoch):
        """Train one epoch; return the averaged train and val_ metrics, lr and timing."""
        self.model.train()
        start, epoch_len = self.batch_in_epoch, self._epoch_len()
        self.batch_in_epoch = 0
        self.interval.reset()  # it counts from the last checkpoint: the previous epoch's, or none
        if start == 0:
            self.train_metrics.reset()
        lr = self.optimizer.param_groups[0]["lr"]
        progress = EpochProgress(epoch_len, f"Epoch {epoch}", self.show_bar, initial=start)
        started = time.perf_counter()
        batches = self.stream.take(epoch_len - start if self.len_epoch else None)
        for batch_idx, (data, target) in enumerate(batches, start):
            data, target = to_device(data, target, self.device, self.train_transform)
            step_now = (batch_idx + 1) % self.accumulate == 0 or batch_idx + 1 == epoch_len
            output, loss = self._run_batch(data, target, step_now=step_now)
            update_metrics(self.train_metrics, self.metric_ftns, output, target, loss)
            self.batch_in_epoch, self.global_step = batch_idx + 1, self.global_step + 1
            progress.update(target.size(0))
            if self.profiler is not None:
                self.profiler = self.profiler.step()  # None once the window's trace is written
            if batch_idx % self.log_step == 0:
                self._log_batch(epoch, batch_idx, epoch_len, loss, data, progress)
            if step_now:
                stop, save = self._poll(batch_idx)
                if stop:
                    progress.close()
                    raise TrainingInterrupted(self.stop_signals.signum or 15)
                if save and batch_idx + 1 < epoch_len:  # the epoch's own save follows its last batch
                    self._save_position(epoch)
                    self.interval.reset()
        progress.close()
        self.train_metrics.all_reduce(dist.all_reduce_sum)  # reads the totals: waits for queued GPU work
        train_time = time.perf_counter() - started
        log = self.train_metrics.result()
        if self.do_validation:
            log.update({f"val_{k}": v for k, v in self._valid_epoch(epoch).items()})
            log.update(self.ema.log_entry() if self.ema is not None else {})
        self._step_scheduler_per_epoch(log)
        self.batch_in_epoch = 0
        samples = progress.samples * dist.get_world_size()
        return {**log, "lr": lr, "epoch_time": time.perf_counter() - started,
                "samples_per_sec": samples / train_time if train_time > 0 else float("nan")}

    def _epoch_len(self):
        """Batches in the epoch that trains next (or is being resumed)."""
        return self.len_epoch or self.batch_in_epoch + self.stream.batches_left_in_pass()

    def _run_batch(self, data, target, step_now=True):
        """Forward and backward one batch; step the optimizer on the last micro-step."""
        with self._gradient_sync(step_now):
            with self.autocast():
                output = forward(self.model, data, self.global_step == 0, target)  # a misfit: one line
                loss = self.criterion(output, target)
            scaled = loss / self.accumulate if self.accumulate > 1 else loss
            self.grad_scaler.scale(scaled).backward()
        if step_now:
            self._optimizer_step()
        return output, loss

    def _gradient_sync(self, step_now):
        """Gradients of accumulation micro-steps stay local: one all-reduce (DDP) or reduce-scatter (FSDP) a step."""
        if self.is_sharded and self.accumulate > 1:
            self.raw_model.set_requires_gradient_sync(step_now)
        return self.model.no_sync() if self.is_ddp and not step_now else nullcontext()

    def _optimizer_step(self):
        if self.clip_grad_norm:
            self.grad_scaler.unscale_(self.optimizer)  # clip the true gradients, not scaled ones
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip_grad_norm)
        self.grad_scaler.step(self.optimizer)  # disabled (no fp16): optimizer.step()
        self.grad_scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update()
        if self.per_batch_scheduler:
            self.lr_scheduler.step()

    def _valid_epoch(self, epoch):
        """Validate after an epoch; metrics are exact averages over the whole split."""
        self.eval_model.eval()
        if self.is_sharded:  # validate the model the checkpoint holds, on every rank
            sync_buffers(self.raw_model)
        on_average = self.ema is not None and self.ema.validate  # then model_best.pth is the best average
        with self.ema.swapped_in() if on_average else nullcontext():
            self.valid_metrics = evaluate(self.eval_model, self.valid_data_loader, self.criterion,
                                          self.metric_ftns, self.device, "Valid", self.show_bar, self.log_step,
                                          self.autocast, same_steps=self.is_sharded)
        if self.options.tensorboard_histograms and self.is_main:
            for name, param in self.raw_model.named_parameters():
                self.writer.write("add_histogram", name, param, epoch, bins="auto")
        return self.valid_metrics.result()

    def _step_scheduler_per_epoch(self, log):
        if self.lr_scheduler is None or self.per_batch_scheduler:
            return
        if isinstance(self.lr_scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            key = next(key for key in (self.monitor.metric, "val_loss", "loss") if key in log)
            self.lr_scheduler.step(log[key])
        else:
            self.lr_scheduler.step()

    def _log_batch(self, epoch, batch_idx, epoch_len, loss, data, progress):
        loss_value = loss.item()  # the one host-device sync, on logging steps only
        if self.show_bar:
            progress.show(loss=f"{self.train_metrics.avg('loss'):.4f}")
        else:
            self.logger.debug(f"Train Epoch: {epoch} [{batch_idx + 1}/{epoch_len} "
                              f"({100.0 * (batch_idx + 1) / epoch_len:.0f}%)] Loss: {loss_value:.6f}")
        if self.writer.enabled:
            self.writer.write("add_scalar", "loss/step", loss_value, self.global_step)
            if self.options.tensorboard_images:
                from torchvision.utils import make_grid
                grid = make_grid(data[:64].float().cpu(), nrow=8, normalize=True)
                self.writer.write("add_image", "input/step", grid, self.global_step)

    def _poll(self, batch_idx):
        """(stop now, save the position now), the same on every rank; asked after optimizer steps only."""
        self.interval.step()
        if not dist.is_distributed():
            return self.stop_signals.requested, self.interval.due(clock=True)
        # a step count is the same on every rank; a signal or rank 0's clock is shared by a collective,
        # so only every log_step-th step asks
        if (batch_idx // self.accumulate) % self.log_step:
            return False, self.interval.due(clock=False)
        stop, late = dist.any_rank(self.stop_signals.requested, self.is_main and self.interval.due(clock=True))
        return stop, late or self.interval.due(clock=False)

    # ---- checks before training ---------------------------------------------
    def _metric_names(self):
        names = ["loss", *(metric_name(m) for m in self.metric_ftns)]
        return names + [f"val_{n}" for n in names] if self.do_validation else names

    def check_before_training(self):
        super().check_before_training()
        # a rank without validation batches could not join the sharded model's all-gathers (every rank asks)
        if self.is_sharded and self.do_validation and dist.any_rank(len(self.valid_data_loader) == 0):
            raise UserError(f"the validation split has fewer samples than the {dist.get_world_size()} ranks "
                            "trainer.strategy \"fsdp\" validates on; raise data_loader.args.validation_split")
        total = getattr(self.lr_scheduler, "total_steps", None)  # OneCycleLR: stepping past it raises
        if not self.per_batch_scheduler or total is None:
            return
        per_epoch = math.ceil((self.len_epoch or len(self.data_loader)) / self.accumulate)
        this_epoch = math.ceil((self._epoch_len() - self.batch_in_epoch) / self.accumulate)
        needed = self.lr_scheduler.last_epoch + this_epoch + (self.epochs - self.start_epoch) * per_epoch
        if needed > total:
            name = type(self.lr_scheduler).__name__
            raise UserError(f"lr_scheduler {name} stops after total_steps={total} optimizer steps, but "
                            f"trainer.epochs={self.epochs} needs {needed}; set lr_scheduler.args.total_steps to "
                            f"{needed} or more (or epochs={self.epochs} with steps_per_epoch={per_epoch})")

    # ---- resuming ------------------------------------------------------------
    def _restore(self, checkpoint):
        old_batch_size = checkpoint["config"].get("data_loader", {}).get("args", {}).get("batch_size")
        super()._restore(checkpoint)
        if "data_stream" not in checkpoint:  # a checkpoint without a position: start the next epoch's pass
            self.stream.load_state_dict({"data_pass": checkpoint["epoch"] + 1, "samples": 0})
        if self.len_epoch:
            self.batch_in_epoch = checkpoint.get("resume_batch", 0)
        else:  # counted in samples: the batch size may have changed since
            self.batch_in_epoch = math.ceil(self.stream.position / (self.data_loader.batch_size or 1))
        if self.stream.position and old_batch_size != self.data_loader.batch_size:
            self.run.note(logging.INFO, f"The batch size changed from {old_batch_size} to "
                          f"{self.data_loader.batch_size}: the epoch continues after the "
                          f"{self.stream.position} samples already trained")
