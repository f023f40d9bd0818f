"""Run under torchrun by tests/test_ema_fsdp.py: the averaged weights of an FSDP2 model, in memory, at 2 ranks.

    torchrun --standalone --nproc_per_node=2 tests/helpers/fsdp_ema_roundtrip.py OUT_DIR

A small model with uneven shards (5 and 3 rows over 2 ranks) and a parameter of the root module itself (the
root keeps its gathered weights after a forward) trains a few Adam steps with an average; then its three
loads (sharded in memory, sharded through torch.distributed.checkpoint, full) and a validation swap. Each
rank writes what it saw (evidence_rank<r>.pt); the test compares.
"""
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
import torch.distributed.checkpoint as dcp  # noqa: E402

from trainer.ema import AveragedWeights, ShardedAveragedWeights  # noqa: E402
from utils import distributed as dist  # noqa: E402
from utils.sharding import shard_model  # noqa: E402

SETTINGS = {"decay": 0.7, "every": 1, "start": 1}
STEPS = 4  # averaged after steps 2, 3 and 4


class RootScaled(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.norm, self.b = torch.nn.Linear(3, 5), torch.nn.BatchNorm1d(5), torch.nn.Linear(5, 3)
        self.scale = torch.nn.Parameter(torch.ones(3))  # the root's own: no unit holds it

    def forward(self, x):
        return self.b(torch.relu(self.norm(self.a(x)))) * self.scale


def probe():
    """The input every rank evaluates (the same on each)."""
    return torch.linspace(-1, 1, 12).reshape(4, 3)


def sharded_average(device, seed=0):
    torch.manual_seed(seed)
    model = shard_model(RootScaled(), device)
    return model, AveragedWeights.from_option(SETTINGS, model, note=lambda level, line: None)


def full(model):
    """The model's weights, gathered whole on every rank (its buffers are whole already)."""
    return {k: getattr(v, "full_tensor", lambda v=v: v)().clone() for k, v in model.state_dict().items()}


def train(model, average, steps):
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    torch.manual_seed(100 + dist.get_rank())  # each rank its own batches
    seen = []
    for _ in range(steps):
        model(torch.randn(8, 3)).square().mean().backward()
        optimizer.step()
        optimizer.zero_grad()
        average.update()
        seen.append(full(model))
    return seen


def local_average(average):
    return [t.clone() for t in average.avg]


def main(out_dir):
    device = dist.init_distributed() or torch.device("cpu")
    out_dir, rank = Path(out_dir), dist.get_rank()
    try:
        model, average = sharded_average(device)
        assert isinstance(average, ShardedAveragedWeights)
        evidence = {"steps": train(model, average, STEPS), "avg": local_average(average),
                    "names": average.averaged_names, "full": average.state_dict()}

        _, in_memory = sharded_average(device, seed=1)  # another start: nothing in common but the shapes
        in_memory.load_sharded_state_dict(average.sharded_state_dict())
        evidence["in_memory"] = (local_average(in_memory), in_memory.n_averaged, in_memory.steps)

        dcp.save(average.sharded_state_dict(), checkpoint_id=out_dir / "dcp")
        _, through_dcp = sharded_average(device, seed=2)
        state = through_dcp.sharded_state_dict()
        dcp.load(state, checkpoint_id=out_dir / "dcp")  # fills the DTensors in place, the counts by key
        through_dcp.load_sharded_state_dict(state)
        evidence["dcp"] = (local_average(through_dcp), through_dcp.n_averaged, through_dcp.steps)

        if rank == 0:  # rank 0 alone has the full state; every rank reads it back, as each reads a checkpoint
            torch.save(evidence["full"], out_dir / "full.pt")
        dist.barrier()
        saved = torch.load(out_dir / "full.pt", weights_only=True)
        _, from_full = sharded_average(device, seed=3)
        from_full.load_state_dict(saved)
        evidence["from_full"] = (local_average(from_full), from_full.n_averaged, from_full.steps)

        evidence.update(swap(model, average))
        torch.save(evidence, out_dir / f"evidence_rank{rank}.pt")
    finally:
        dist.cleanup()


@torch.no_grad()
def swap(model, average):
    """Outputs on the probe before, inside and after `swapped_in`, and the raw weights before and after."""
    model.eval()
    before = full(model)
    out_raw = model(probe())  # the root now holds its gathered (raw) weights
    with average.swapped_in():
        out_avg = model(probe())
    return {"out_raw": out_raw, "out_avg": out_avg, "out_after": model(probe()),
            "raw_before": before, "raw_after": full(model)}


if __name__ == "__main__":
    main(sys.argv[1])
