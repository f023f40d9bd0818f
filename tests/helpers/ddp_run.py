"""Run under torchrun by tests/test_distributed.py: train.py's main, then test.py's main, in one launch.

    torchrun --standalone --nproc_per_node=2 tests/helpers/ddp_run.py CONFIG OUT_DIR
    torchrun ... tests/helpers/ddp_run.py --train OUT_DIR TRAIN_PY_ARGS...   (train.py's entry point alone)

Each rank leaves evidence in OUT_DIR that the entry points do not write:
its final weights and optimizer state, whole (weights_rank<r>.pt, optimizer_rank<r>.pt), the files it saved
(saves_rank<r>.txt), the validation samples its loader gave it (valid_indices_rank<r>.json), how its model ran
(model_rank<r>.json: the wrapper's class, the graphs torch.compile made) and, with --train, its exit code
(exit_rank<r>.txt: torchrun's agent, stopped by a signal, reports none of its workers').
One launch serves both entry points because starting torchrun costs seconds. The final state comes from the
trainer, not from a checkpoint file, so tests comparing it hold whatever format checkpoints take.
"""
import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # before the imports: REPO/test.py, not the stdlib's `test`

import torch  # noqa: E402

import test as test_entry  # noqa: E402
import train  # noqa: E402
from runs.checkpointer import Checkpointer  # noqa: E402
from runs.entry import run_entry  # noqa: E402
from utils import distributed as dist  # noqa: E402


def record_saves(out_dir):
    """Log every checkpoint file this rank writes, then write it as usual."""
    original = Checkpointer.write

    def recording_save(self, state, names, *args):
        with open(out_dir / f"saves_rank{dist.get_rank()}.txt", "a") as log:
            log.writelines(f"{name}\n" for name in names)
        original(self, state, names, *args)

    Checkpointer.write = recording_save


def whole(value):
    """FSDP's state holds DTensors (a shard each): the full tensor, gathered on every rank (a collective)."""
    return value.full_tensor() if hasattr(value, "full_tensor") else value


def dump_weights(trainer, out_dir):
    """This rank's final weights, optimizer state and validation indices, for the test to compare across ranks
    and runs."""
    rank = dist.get_rank()
    torch.save({k: whole(v) for k, v in trainer.raw_model.state_dict().items()}, out_dir / f"weights_rank{rank}.pt")
    optimizer = {index: {name: whole(v) for name, v in state.items()}
                 for index, state in trainer.optimizer.state_dict()["state"].items()}
    torch.save(optimizer, out_dir / f"optimizer_rank{rank}.pt")
    indices = [i for batch in trainer.valid_data_loader.batch_sampler for i in batch]
    (out_dir / f"valid_indices_rank{rank}.json").write_text(json.dumps(indices))
    (out_dir / f"model_rank{rank}.json").write_text(json.dumps(
        {"class": type(trainer.model).__name__, "compiled_graphs": compiled_graphs()}))


def compiled_graphs():
    """The graphs torch.compile captured in this process (0 when nothing was compiled)."""
    if "torch._dynamo" not in sys.modules:
        return 0
    from torch._dynamo.utils import counters
    return counters["stats"]["unique_graphs"]


def main(config_path, out_dir):
    device = dist.init_distributed()
    out_dir = Path(out_dir)
    (out_dir / f"saves_rank{dist.get_rank()}.txt").touch()
    record_saves(out_dir)
    try:
        config = train.parse_args(["-c", config_path])
        trainer = train.build_trainer(config, device)  # what train.main does, then the weights are dumped
        trainer.train()
        dump_weights(trainer, out_dir)
        dist.barrier()  # rank 0 may still be writing model_best.pth when the others finish training
        test_entry.main(test_entry.parse_args(["-r", str(config.save_dir / "model_best.pth")]), device)
    finally:
        dist.cleanup()


def train_only(out_dir, argv):
    """train.py's entry point on `argv` (run_entry: exit codes, the group left), then the evidence."""
    device = dist.init_distributed()

    def train_and_dump():
        trainer = train.build_trainer(train.parse_args(argv), device)
        trainer.train()
        dump_weights(trainer, Path(out_dir))

    exit_file = Path(out_dir) / f"exit_rank{os.environ['RANK']}.txt"  # the group is gone after run_entry
    try:
        run_entry(train_and_dump)
    except SystemExit as stop:  # a user error, or a stop that saved (143 for SIGTERM)
        exit_file.write_text(str(stop.code))
        raise
    exit_file.write_text("0")


if __name__ == "__main__":
    if sys.argv[1] == "--train":
        train_only(sys.argv[2], sys.argv[3:])
    else:
        main(*sys.argv[1:3])
