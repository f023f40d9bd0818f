"""The weights and optimizer of an FSDP2-sharded model as checkpoint parts, in the same file format as the plain
ones: full (unsharded) tensors on the CPU, keyed like a plain model's `state_dict()` and a plain optimizer's
(parameter indices), so a checkpoint moves freely between DDP, FSDP, one process and any world size.
Saving and loading are collectives: every rank calls them; rank 0 alone gets the full state, and on load
broadcasts it to the others, each keeping its own shard."""
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from runs.parts import ModelWeights, OptimizerState
from utils.checkpoint import checked_weights
from utils.sharding import is_sharded

GATHER_TO_CPU = StateDictOptions(full_state_dict=True, cpu_offload=True)  # rank 0 gets it all, others {}
FROM_RANK0 = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True)


class ShardedModelWeights(ModelWeights):
    def state_dict(self):
        return get_model_state_dict(self.model, options=GATHER_TO_CPU)

    def load_state_dict(self, state):
        state = checked_weights(self.model, state, self.source())  # another architecture: one line, every rank
        set_model_state_dict(self.model, state, options=FROM_RANK0)


class ShardedOptimizerState(OptimizerState):
    def __init__(self, optimizer, model, config, checkpointer, note):
        super().__init__(optimizer, config, checkpointer, note)
        self.model = model

    def state_dict(self):
        state = get_optimizer_state_dict(self.model, self.optimizer, options=GATHER_TO_CPU)
        return _keyed_by_index(state) if state else state

    def put(self, state):
        state = _keyed_by_name(state, self._param_names())
        set_optimizer_state_dict(self.model, self.optimizer, state, options=FROM_RANK0)

    def _param_names(self):
        """The model's parameter names in the optimizer's order: the order plain state_dict() numbers them."""
        names = {id(param): name for name, param in self.model.named_parameters()}
        return [names[id(param)] for group in self.optimizer.param_groups for param in group["params"]]


def _keyed_by_index(state):
    """torch's full optimizer state is keyed by parameter name; a plain optimizer's by its index, counted over
    the groups in order."""
    index = {name: i for i, name in enumerate(n for group in state["param_groups"] for n in group["params"])}
    return {"state": {index[name]: value for name, value in state["state"].items()},
            "param_groups": [{**group, "params": [index[n] for n in group["params"]]}
                             for group in state["param_groups"]]}


def _keyed_by_name(state, names):
    return {"state": {names[i]: value for i, value in state["state"].items()},
            "param_groups": [{**group, "params": [names[i] for i in group["params"]]}
                             for group in state["param_groups"]]}


def weight_parts(model, optimizer, config, checkpointer, note, source):
    """(model part, optimizer part): the sharded adapters for a sharded model, else the plain ones."""
    if is_sharded(model):
        return (ShardedModelWeights(model, source),
                ShardedOptimizerState(optimizer, model, config, checkpointer, note))
    return ModelWeights(model, source), OptimizerState(optimizer, config, checkpointer, note)
