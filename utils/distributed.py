"""torch.distributed in a few named helpers; without torchrun (RANK, WORLD_SIZE) the process is rank 0 of 1
and each does the single-process thing."""
import gc
import importlib
import json
import os
import sys
import uuid

import torch
import torch.distributed as dist

JOIN_PREFIX = "template_join"  # the keys the process group is joined through, in torchrun's store
JOB_KEY = "template_job_run"  # the run this torchrun job trains, recorded by its first worker group
STOP_KEY = "template_job_stop"  # why a group ended in a way no restart mends (a full disk), for the next groups
_store = None  # torchrun's store: it lives exactly as long as the agent, across the groups it restarts
_group = None  # this worker group's own id: a record it wrote itself is no restart (a second run of one job)
_mesh = None  # the device mesh over every rank (FSDP's), built once per process group; cleanup lets it go
# torch modules whose function defaults are `group.WORLD`, read when the module is first imported: imported
# after the group exists (DDP imports the first), they hold it for good, and destroy_process_group then leaves
# its gloo threads running into interpreter exit (docs/distributed.md: Why a finished rank could abort)
WORLD_DEFAULT_MODULES = ("torch.distributed.nn.functional", "torch.distributed.optim.zero_redundancy_optimizer",
                         "torch.distributed.fsdp.sharded_grad_scaler")


def init_distributed():
    """Join the process group torchrun set up (NCCL on CUDA, else gloo); this rank's device, or None without."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ or dist.is_initialized():
        return None
    global _store, _group
    _die_with_parent()
    for module in WORLD_DEFAULT_MODULES:  # before the group exists: their defaults hold None, not the group
        importlib.import_module(module)
    _store, rank, world_size = next(dist.rendezvous("env://"))
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    # joining keys a killed group left in torchrun's store would hang a restarted one (docs/restarts.md: Why
    # restarts used to hang); restart counts differ between nodes, so each group removes its own once all joined
    dist.init_process_group("nccl" if cuda else "gloo", store=dist.PrefixStore(JOIN_PREFIX, _store), rank=rank,
                            world_size=world_size, device_id=device if cuda else None)
    _forget_join_keys(_store, rank)
    _group = broadcast_object(uuid.uuid4().hex)
    return device


def _die_with_parent():
    """A worker whose torchrun agent is SIGKILLed would train on alone, beside the job that is requeued
    in its place: ask Linux to kill this process when the agent dies."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    parent = os.getppid()
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the agent died before the request was made
        os.kill(os.getpid(), signal.SIGKILL)


def job_run():
    """What the first worker group of this torchrun job recorded about its run (a dict), or None: a
    first start, or no torchrun. Every rank calls it."""
    record = None
    if is_main_process() and _store is not None and _store.check([JOB_KEY]):
        record = json.loads(_store.get(JOB_KEY))
        record = record if record.pop("group") != _group else None
    return broadcast_object(record)


def record_job_run(record):
    """Rank 0 records the run this job trains, for the groups torchrun may restart."""
    if _store is not None and is_main_process():
        _store.set(JOB_KEY, json.dumps({**record, "group": _group}))


def record_job_stop(why):
    """Rank 0 records, for the groups torchrun restarts next, why this one ended in a way a restart would only
    repeat (a full disk: torchrun restarts on any failure, and cannot be told otherwise)."""
    if _store is not None and is_main_process():
        _store.set(STOP_KEY, json.dumps({"why": why, "group": _group}))


def job_stop():
    """Why an earlier worker group of this torchrun job ended for good (record_job_stop), or None. Every rank
    calls it."""
    why = None
    if is_main_process() and _store is not None and _store.check([STOP_KEY]):
        record = json.loads(_store.get(STOP_KEY))
        why = record["why"] if record["group"] != _group else None
    return broadcast_object(why)


def _forget_join_keys(store, rank):
    """After every rank has joined, rank 0 deletes the joining keys: a restarted group starts clean."""
    dist.barrier()
    if rank != 0:
        return
    try:
        keys = [key for key in store.list_keys() if key.startswith(JOIN_PREFIX)]
    except (RuntimeError, NotImplementedError, AttributeError):  # a store that cannot list keys
        return
    for key in keys:
        store.delete_key(key)


def is_distributed():
    return dist.is_available() and dist.is_initialized()


def get_rank():
    return dist.get_rank() if is_distributed() else 0


def get_world_size():
    return dist.get_world_size() if is_distributed() else 1


def is_main_process():
    return get_rank() == 0


def all_reduce_sum(tensor):
    """Sum a tensor over all ranks (in place where possible) and return it."""
    if not is_distributed():
        return tensor
    reduced = tensor.to("cuda" if dist.get_backend() == "nccl" else "cpu")  # "cuda": this rank's current device
    dist.all_reduce(reduced, op=dist.ReduceOp.SUM)
    return reduced.to(tensor.device)


def any_rank(*flags):
    """For each flag: True on every rank when it is true on at least one (one collective for all)."""
    found = (all_reduce_sum(torch.tensor([1.0 if f else 0.0 for f in flags])) > 0).tolist()
    return found[0] if len(flags) == 1 else found


def broadcast_object(obj, src=0):
    """Rank `src`'s value of a picklable object, on every rank."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_gather_object(obj):
    """Every rank's value of a picklable object, as a list indexed by rank."""
    if not is_distributed():
        return [obj]
    gathered = [None] * get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def barrier():
    if is_distributed():
        dist.barrier()


def world_mesh(device_type):
    """The 1-D device mesh over every rank of the job (FSDP shards over it), one per process group: each trial of a
    search reuses it, and cleanup frees the group it holds."""
    global _mesh
    if _mesh is None:
        from torch.distributed.device_mesh import init_device_mesh
        _mesh = init_device_mesh(device_type, (get_world_size(),))
    return _mesh


def cleanup():
    """Leave the process group, and free it: its gloo worker threads are joined here, while Python is alive. One
    left running into interpreter exit may drop a finished collective's tensors there; that needs the GIL, which
    ends the thread inside a C++ destructor and aborts the process ("terminate called without an active
    exception", docs/distributed.md). After a clean finish, wait for every rank first; after an error there is
    no wait: others may never arrive."""
    if not is_distributed():
        return
    if sys.exc_info()[0] is None:  # called from a `finally`: None unless an exception is on its way out
        dist.barrier()
    gc.collect()  # a finished trainer is garbage in a reference cycle: its DDP wrapper holds the group too
    dist.destroy_process_group()
    _let_the_mesh_go()


def _let_the_mesh_go():
    """Drop the device mesh's hold on the destroyed group. DTensor's sharding caches keep every mesh FSDP used
    until interpreter exit, and a mesh keeps its groups: the group's gloo threads would outlive Python as above.
    torch has no public call that frees a mesh's groups, hence its registry, emptied."""
    global _mesh
    if _mesh is not None:
        _mesh._pg_registry.clear()
        _mesh = None
