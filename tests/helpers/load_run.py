"""Run under torchrun by tests/test_sharded_checkpoints.py: build the trainer that continues a checkpoint, load it
as train.py would, and save what the ranks then hold, gathered whole, without training a step.

    torchrun --standalone --nproc_per_node=M tests/helpers/load_run.py CHECKPOINT OUT_FILE [train.py flags]

OUT_FILE gets {"state_dict": the weights, "optimizer": the optimizer state (plain format), "sharded": whether
the model was sharded}: what a loaded sharded checkpoint put on the ranks, to compare with what was saved.
"""
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

import train  # noqa: E402
from utils import distributed as dist  # noqa: E402


def main(checkpoint, out_file, *flags):
    device = dist.init_distributed()
    try:
        config = train.parse_args(["-r", checkpoint, *flags])
        trainer = train.build_trainer(config, device)
        trainer._restore(trainer.run.saved_checkpoint)  # what train() does first, before any folder is touched
        parts = trainer.checkpointer.parts
        loaded = {"state_dict": parts["state_dict"].state_dict(), "optimizer": parts["optimizer"].state_dict(),
                  "sharded": trainer.checkpointer.sharded}  # the full state: gathered to rank 0 when sharded
        if dist.is_main_process():
            torch.save(loaded, out_file)
    finally:
        dist.cleanup()


if __name__ == "__main__":
    main(*sys.argv[1:])
