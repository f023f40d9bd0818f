"""The weights and optimizer of an FSDP2-sharded model as checkpoint parts. Each offers two forms:
- sharded (`sharded_state_dict()` / `load_sharded_state_dict(state)`): this rank's shards as DTensors, what the
  checkpointer saves into a sharded (DCP) folder and loads back at any world size, each rank its own slices;
- full (`state_dict()` / `load_state_dict(state)`): full tensors on the CPU, keyed like a plain model's
  `state_dict()` and a plain optimizer's (parameter indices): the single-file format, gathered to rank 0 and
  broadcast from it on load (a single-file checkpoint, e.g. a DDP run's, continued under FSDP).
The sharded form is laid out as the full one (the optimizer keyed by index too), so a sharded folder read whole
in one process is exactly the single-file format. All four are collectives: every rank calls them."""
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
OWN_SHARDS = StateDictOptions(full_state_dict=False)  # DTensors: this rank's slices


class ShardedModelWeights(ModelWeights):
    def state_dict(self):
        return get_model_state_dict(self.model, options=GATHER_TO_CPU)

    def load_state_dict(self, state):
        state = checked_weights(self.model, state, self.source())  # another architecture: one line, every rank
        set_model_state_dict(self.model, state, options=FROM_RANK0)

    def sharded_state_dict(self):
        return get_model_state_dict(self.model, options=OWN_SHARDS)

    def load_sharded_state_dict(self, state):
        set_model_state_dict(self.model, state, options=OWN_SHARDS)


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

    def sharded_state_dict(self):
        if self.checkpointer.loading is not None and not self.same_type():
            return {}  # another optimizer type: nothing of the checkpoint's is taken (load_with says so)
        return _keyed_by_index(get_optimizer_state_dict(self.model, self.optimizer, options=OWN_SHARDS))

    def load_sharded_state_dict(self, state):
        self.load_with(self._put_shards, state)

    def _put_shards(self, state):
        state = _keyed_by_name(state, self._param_names())
        set_optimizer_state_dict(self.model, self.optimizer, state, options=OWN_SHARDS)

    def _param_names(self):
        """The model's parameter names in the optimizer's order: the order plain state_dict() numbers them."""
        names = {id(param): name for name, param in self.model.named_parameters()}
        return [names[id(param)] for group in self.optimizer.param_groups for param in group["params"]]


def _keyed_by_index(state):
    """torch's optimizer state is keyed by parameter name; a plain optimizer's by its index, counted over
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
