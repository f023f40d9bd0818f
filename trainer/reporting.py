"""What the trainer tells a person: the per-epoch block, TensorBoard scalars, the summary."""


def epoch_block(log):
    """The classic aligned per-epoch block, one line per value."""
    return [f"    {str(key):15s}: {value}" for key, value in log.items()]


def write_epoch_scalars(writer, log):
    """Per-epoch TensorBoard scalars: `<metric>/train`, `<metric>/valid`, lr, samples/s."""
    epoch = log["epoch"]
    for key, value in log.items():
        if key in ("epoch", "lr", "epoch_time"):
            continue
        mode, name = ("valid", key[4:]) if key.startswith("val_") else ("train", key)
        writer.set_step(epoch, mode)
        writer.add_scalar(name, value)
    writer.set_step(epoch, "")
    for key in ("lr", "epoch_time"):
        if key in log:
            writer.add_scalar(key, log[key])
    writer.flush()


def summary_lines(monitor, checkpoint_dir, log_dir, last_epoch):
    """End-of-training summary: best epoch, where things are, what to run next."""
    lines = [f"Training finished after epoch {last_epoch}."]
    if monitor.enabled and monitor.best_epoch is not None:
        lines.append(f"Best {monitor.metric}: {monitor.best:.6g} at epoch {monitor.best_epoch}")
    best = checkpoint_dir / "model_best.pth"
    chosen = best if best.is_file() else checkpoint_dir / "model_latest.pth"
    lines += [f"Checkpoints: {checkpoint_dir}",
              f"Logs and TensorBoard: {log_dir}",
              f"Resume: python train.py -r {checkpoint_dir / 'model_latest.pth'}",
              f"Test:   python test.py -r {chosen}"]
    return lines
