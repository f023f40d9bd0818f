"""FSDP2 (`torch.distributed.fsdp.fully_shard`) for trainer.strategy "fsdp": each rank keeps a 1/world slice of
every parameter, its gradient and its optimizer state; a unit's full weights are all-gathered just before its
forward and backward and freed after (docs/distributed.md, Sharded training)."""
import torch

from utils import distributed as dist
from utils.errors import UserError

STRATEGIES = ("ddp", "fsdp")


def direct_children_with_parameters(model):
    """The default FSDP units: each direct child that owns parameters (one all-gather per child and step)."""
    return [child for child in model.children() if next(child.parameters(), None) is not None]


def fsdp_units(model):
    """The submodules the model asks to shard on their own (its `fsdp_units()` hook, BaseModel's default)."""
    hook = getattr(model, "fsdp_units", None)
    return list(hook()) if callable(hook) else direct_children_with_parameters(model)


def shard_model(model, device, amp=False):
    """Shard `model` in place over every rank of the job: its units first, then the root (which takes the
    parameters no unit holds). bf16 computes in bfloat16 and reduces gradients in float32."""
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mesh = dist.world_mesh(device.type)
    policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) \
        if amp == "bf16" else MixedPrecisionPolicy()
    for param in model.parameters():  # FSDP2 shards row-major storage only (LeNet's weights are channels_last)
        param.data = param.data.contiguous()
    # each rank initialised its own copy (seeded per rank): start from rank 0's, as DDP's constructor does
    for tensor in [*model.parameters(), *model.buffers()]:
        torch.distributed.broadcast(tensor.data, src=0)
    for unit in fsdp_units(model):
        fully_shard(unit, mesh=mesh, mp_policy=policy)
    return fully_shard(model, mesh=mesh, mp_policy=policy)


def sync_buffers(model):
    """Rank 0's buffers (BatchNorm's running statistics) on every rank: FSDP shards parameters only, so each
    rank's buffers drift apart in training (DDP copies rank 0's at every forward); the checkpoint holds rank 0's."""
    for buffer in model.buffers():
        torch.distributed.broadcast(buffer.data, src=0)


def is_sharded(model):
    """True for a model `shard_model` wrapped (fully_shard swaps the module's class in place)."""
    from torch.distributed.fsdp import FSDPModule
    return isinstance(model, FSDPModule)


def check_strategy(strategy, amp):
    """A note for the run's log (None: nothing to say), or a UserError for what FSDP here does not do."""
    if strategy != "fsdp":
        return None
    if amp == "fp16":  # fp16 needs a GradScaler that agrees on inf/NaN over the shards: bf16 needs no scaler
        raise UserError("config: trainer.amp \"fp16\" is not supported with trainer.strategy \"fsdp\"; "
                        "use trainer.amp \"bf16\" (no loss scaling needed) or trainer.strategy \"ddp\"")
    if not dist.is_distributed():
        return ("trainer.strategy \"fsdp\": one process, nothing to shard, so the plain model trains; "
                "launch with torchrun --nproc_per_node=N to shard it")
    return None
