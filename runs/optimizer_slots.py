"""State an optimizer arg changed on resume adds (runs/parts.py). Turning on Adam's amsgrad makes each step read
a slot (max_exp_avg_sq) that the checkpoint's state, saved without it, lacks: the first step would stop with a
KeyError. The optimizer is stepped once on a copy of itself on the meta device (no memory, no arithmetic, the
real one untouched) to find the slots it would miss; each gets the value the optimizer would give it on a
parameter's first step, zeros shaped like the parameter."""
import torch

MAX_ROUNDS = 8  # one slot found per round; no optimizer in torch.optim adds more than a few


def add_missing_slots(optimizer):
    """Give each stepped parameter's state the slots its optimizer's settings now need; return their names."""
    try:
        missing = _missing_slots(optimizer)
    except Exception:  # noqa: BLE001 - an optimizer that cannot step on meta tensors: its state is left as loaded
        return []
    for param, state in optimizer.state.items():
        for key in missing:
            if state and key not in state:
                state[key] = torch.zeros_like(param, memory_format=torch.preserve_format)
    return missing


def _missing_slots(optimizer):
    groups = []
    for group in optimizer.param_groups:
        params = [_meta_param(param) for param in group["params"]]
        groups.append({**{k: v for k, v in group.items() if k != "params"}, "params": params})
    probe = type(optimizer)(groups)
    state = optimizer.state_dict()
    probe.load_state_dict({"param_groups": state["param_groups"],
                           "state": {i: {k: _meta(v) for k, v in s.items()} for i, s in state["state"].items()}})
    missing = []
    for _ in range(MAX_ROUNDS):
        try:
            probe.step()
            return missing
        except KeyError as err:
            key = err.args[0]
            if key in missing:
                raise
            missing.append(key)
            for param, slots in probe.state.items():
                if slots and key not in slots:
                    slots[key] = torch.zeros_like(param)
    raise RuntimeError("too many missing slots")


def _meta_param(param):
    meta = torch.zeros_like(param, device="meta", requires_grad=param.requires_grad)
    meta.grad = torch.zeros_like(meta)
    return meta


def _meta(value):
    """A state value for the probe: a tensor on the meta device (a 0-d step count copied: it is read as a
    number), anything else as it is (the probe does not change what it is given)."""
    if not torch.is_tensor(value):
        return value
    return value.detach().clone() if value.dim() == 0 else value.detach().to("meta")
