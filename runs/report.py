"""What the trainer tells a person: the per-epoch block, TensorBoard scalars, the summary."""
from runs.files import BEST, LATEST
from runs.folder import quote, resume_command

NOT_SCALARS = ("epoch", "val_on_ema")  # val_on_ema: 1 when val_ metrics measured the averaged weights (EMA)


def epoch_block(log):
    """The classic aligned per-epoch block; floats to 6 significant digits (metrics.csv keeps every digit)."""
    return [f"    {str(key):15s}: {value:.6g}" if isinstance(value, float) else f"    {str(key):15s}: {value}"
            for key, value in log.items()]


def write_epoch_scalars(writer, log):
    """Per-epoch scalars to the metrics sink: `<metric>/train`, `<metric>/valid`, lr, epoch_time, samples/s."""
    writer.log({_epoch_tag(key): value for key, value in log.items() if key not in NOT_SCALARS}, log["epoch"])
    writer.flush()  # before the epoch's checkpoint: trackers then hold every step it holds, even after a kill


def _epoch_tag(key):
    if key in ("lr", "epoch_time"):
        return key
    return f"{key[4:]}/valid" if key.startswith("val_") else f"{key}/train"


def summary_lines(monitor, checkpoint_dir, log_dir, last_epoch, epochs, rerun=None):
    """End-of-training summary: best epoch, where things are, what to run next. A run that has a command of its
    own (`rerun`: a tune.py trial) is not trained further by train.py -r, which would train it outside its study."""
    lines = [f"Training finished after epoch {last_epoch}."]
    if monitor.enabled and monitor.best_epoch is not None:
        lines.append(f"Best {monitor.metric}: {monitor.best:.6g} at epoch {monitor.best_epoch}")
    best = checkpoint_dir / BEST
    chosen = best if best.is_file() else checkpoint_dir / LATEST
    lines += [f"Checkpoints: {checkpoint_dir}", f"Logs and TensorBoard: {log_dir}"]
    if rerun is None:  # a run that trained all its epochs goes on only with more of them
        lines.append(f"Train further: {resume_command(checkpoint_dir, f'-o trainer.epochs={2 * epochs}')}"
                     if last_epoch >= epochs else f"Resume: {resume_command(checkpoint_dir)}")
    return [*lines, f"Test:   python test.py -r {quote(chosen)}"]


def best_so_far(monitor, checkpoint_dir):
    """The monitored metric's best value and epoch, and the best checkpoint's path, for trackers."""
    best = checkpoint_dir / BEST
    found = monitor.enabled and monitor.best_epoch is not None
    return {"run_folder": str(checkpoint_dir.absolute()), "metric": monitor.metric if found else None,
            "value": monitor.best if found else None, "epoch": monitor.best_epoch if found else None,
            "checkpoint": str(best.absolute()) if best.is_file() else None}
