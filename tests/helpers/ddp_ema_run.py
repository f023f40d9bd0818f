"""Run under torchrun by tests/test_ema_ddp.py: train.py's trainer with trainer.ema, then each rank's evidence.

    torchrun --standalone --nproc_per_node=2 tests/helpers/ddp_ema_run.py CONFIG OUT_DIR

Each rank writes its average's state (ema_rank<r>.pt) and its weights after every optimizer step
(steps_rank<r>.pt), which the entry point does not write.
"""
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

import train  # noqa: E402
import trainer.trainer as trainer_module  # noqa: E402
from utils import distributed as dist  # noqa: E402


def record_steps(seen):
    step = trainer_module.Trainer._optimizer_step

    def step_and_record(self):
        step(self)
        seen.append({k: v.detach().clone() for k, v in self.raw_model.state_dict().items()})
    trainer_module.Trainer._optimizer_step = step_and_record


def main(config_path, out_dir):
    device = dist.init_distributed()
    seen = []
    record_steps(seen)
    try:
        trainer = train.build_trainer(train.parse_args(["-c", config_path]), device)
        trainer.train()
        rank = dist.get_rank()
        torch.save(trainer.ema.state_dict(), Path(out_dir) / f"ema_rank{rank}.pt")
        torch.save(seen, Path(out_dir) / f"steps_rank{rank}.pt")
    finally:
        dist.cleanup()


if __name__ == "__main__":
    main(*sys.argv[1:3])
