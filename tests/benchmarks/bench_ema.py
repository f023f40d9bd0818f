"""Benchmark: what trainer.ema costs per optimizer step on the default config (config.json, real MNIST).

    python tests/benchmarks/bench_ema.py [--blocks 40] [--block-steps 10]

One process, one Trainer built by train.py from config.json with trainer.ema set: its real training step
(`_run_batch`: forward, backward, optimizer step, then the average's update) is timed in blocks of steps with
the average on and off, alternated A B B A so that drift on a shared machine falls on both alike. Reported:
the median step time of each, their ratio (target: <= 1.05), and the update alone over the median step.
"""
import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TARGET = 1.05


def build_trainer(save_dir):
    sys.path.insert(0, str(REPO))
    import train

    config = json.loads((REPO / "config.json").read_text())
    config["trainer"].update(save_dir=str(save_dir), ema={"decay": 0.999})
    path = Path(save_dir) / "bench_ema_config.json"
    path.write_text(json.dumps(config))
    return train.build_trainer(train.parse_args(["-c", str(path)]))  # no folder made, nothing trained


def timed_block(trainer, batches, steps, ema):
    """Seconds per step over `steps` training steps with the average `ema` (None: off)."""
    trainer.ema = ema
    started = time.perf_counter()
    for _ in range(steps):
        data, target = next(batches)
        trainer._run_batch(data, target)
    trainer.raw_model.conv1.weight.sum().item()  # waits for queued device work
    return (time.perf_counter() - started) / steps


def update_alone(ema, repeats=2000):
    started = time.perf_counter()
    for _ in range(repeats):
        ema.update()
    next(iter(ema.avg)).sum().item()
    return (time.perf_counter() - started) / repeats


def endless_batches(trainer):
    from trainer.evaluation import to_device

    while True:
        for data, target in trainer.data_loader:
            yield to_device(data, target, trainer.device, trainer.train_transform)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=40, help="blocks of each kind (alternated A B B A)")
    parser.add_argument("--block-steps", type=int, default=10, help="training steps per block")
    args = parser.parse_args()
    if not (REPO / "data" / "MNIST" / "raw").exists():
        sys.exit("needs the real MNIST in data/MNIST/raw (see the README, Data)")
    with tempfile.TemporaryDirectory() as save_dir:
        trainer = build_trainer(save_dir)
        ema, batches = trainer.ema, endless_batches(trainer)
        trainer.model.train()
        timed_block(trainer, batches, 20, ema)  # warm-up: allocator, first-call costs
        times = {"on": [], "off": []}
        for block in range(2 * args.blocks):
            kind = "on" if block % 4 in (0, 3) else "off"
            times[kind].append(timed_block(trainer, batches, args.block_steps, ema if kind == "on" else None))
        alone = update_alone(ema)
    on, off = statistics.median(times["on"]), statistics.median(times["off"])
    print(f"device {trainer.device}, torch threads {__import__('torch').get_num_threads()}, "
          f"{2 * args.blocks} blocks of {args.block_steps} steps, batch {trainer.data_loader.batch_size}")
    print(f"step with EMA    {on * 1e3:8.3f} ms (median of {len(times['on'])} blocks)")
    print(f"step without EMA {off * 1e3:8.3f} ms")
    print(f"ratio            {on / off:8.4f}   target <= {TARGET}  {'PASS' if on / off <= TARGET else 'FAIL'}")
    print(f"update alone     {alone * 1e3:8.3f} ms = {alone / off:.2%} of a step")


if __name__ == "__main__":
    main()
