"""torch.distributed.checkpoint (DCP) folders read without a free unpickler. DCP reads a folder's `.metadata`
with plain `pickle.load` and its non-tensor items with `torch.load(weights_only=False)` (torch 2.14.1): either
would run code a crafted file carries. Here `.metadata` goes through an Unpickler that builds only DCP's own
record classes, and every item loads with `weights_only=True` (tensor items already do, in DCP itself)."""
import errno
import pickle
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint import metadata as dcp_metadata
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.default_planner import DefaultLoadPlanner, _EmptyStateDictLoadPlanner
from torch.distributed.checkpoint.filesystem import FileSystemReader, FileSystemWriter, _StorageInfo
from torch.distributed.checkpoint.state_dict_loader import _load_state_dict

METADATA = ".metadata"  # DCP's own name for a folder's index, written last by the coordinating rank
# what a real save's .metadata holds (torch 2.14.1, an FSDP2 model and Adam): DCP's records, paths, sizes, dtypes
ALLOWED = {
    ("pathlib", "PosixPath"): Path().__class__,
    ("torch", "Size"): torch.Size,
    ("torch.serialization", "_get_layout"): torch.serialization._get_layout,
    ("torch.distributed.checkpoint.filesystem", "_StorageInfo"): _StorageInfo,
    **{("torch.distributed.checkpoint.metadata", name): getattr(dcp_metadata, name)
       for name in ("Metadata", "MetadataIndex", "StorageMeta", "TensorProperties", "TensorStorageMetadata",
                    "ChunkStorageMetadata", "BytesStorageMetadata", "_MEM_FORMAT_ENCODING")},
}
DTYPES = {name for name in dir(torch) if isinstance(getattr(torch, name, None), torch.dtype)}


class _RecordsOnly(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in ALLOWED:
            return ALLOWED[module, name]
        if module == "torch" and name in DTYPES:
            return getattr(torch, name)
        raise pickle.UnpicklingError(f"it would load the global {module}.{name}")


class SafeReader(FileSystemReader):
    """A FileSystemReader whose metadata is unpickled with the allow-list above."""

    def read_metadata(self, *args, **kwargs):
        with open(Path(self.path) / METADATA, "rb") as handle:
            metadata = _RecordsOnly(handle).load()
        if getattr(metadata, "storage_meta", None) is None:
            metadata.storage_meta = dcp_metadata.StorageMeta()
        metadata.storage_meta.load_id = self.load_id
        return metadata


def _weights_only(value):
    return torch.load(value, weights_only=True)


class _SafeLoadPlanner(DefaultLoadPlanner):
    """DCP's planner, its non-tensor items loaded with weights_only=True."""

    def load_bytes(self, read_item, value):
        _put_item(self, read_item, _weights_only(value))


class _SafeFullPlanner(_EmptyStateDictLoadPlanner):
    """Every item of a folder at its full size, in one process (no process group), loaded safely."""

    def load_bytes(self, read_item, value):
        _put_item(self, read_item, _weights_only(value))


def _put_item(planner, read_item, value):
    from torch.distributed.checkpoint._traverse import set_element
    if planner.flatten_state_dict:
        set_element(planner.original_state_dict, planner.mappings[read_item.dest_index.fqn], value)
    else:
        planner.state_dict[read_item.dest_index.fqn] = value


@contextmanager
def _own_errors():
    """DCP wraps what failed (on any rank) in a CheckpointException, a BaseException: raise the first rank's
    own error instead, so an unsafe item or a lost file is reported as such."""
    try:
        yield
    except CheckpointException as err:
        first = next(iter(err.failures.values()), None)
        if first is None:
            raise
        raise first[0] from None


def save(state, folder):
    """Write `state` (its DTensors: each rank its own shards) into the new folder `folder`; a collective."""
    with _own_errors():
        dcp.save(state, storage_writer=FileSystemWriter(str(folder)))


def is_failed_write(err):
    """A RuntimeError of torch's file writer: DCP's non-tensor items are written with torch.save into the shard
    file, which reports a full disk as "[enforce fail at inline_container.cc] unexpected pos", not ENOSPC."""
    return isinstance(err, RuntimeError) and "inline_container" in str(err)


def as_os_error(err):
    """`err` as an OSError (a failed write of torch's file writer: most often a full disk)."""
    if isinstance(err, OSError):
        return err
    return OSError(errno.ENOSPC if _no_space_hint(err) else errno.EIO, "a shard file could not be written")


def _no_space_hint(err):
    return "unexpected pos" in str(err)  # the writer stopped short of what it wrote: the disk took no more


def load(state, folder):
    """Fill `state` in place from `folder`, each rank its own shards at this world size; a collective."""
    with _own_errors():
        dcp.load(state, storage_reader=SafeReader(str(folder)), planner=_SafeLoadPlanner())


def load_full(folder):
    """Everything `folder` holds, at full size, as plain tensors and data, read in this process alone."""
    state = {}
    with _own_errors():
        _load_state_dict(state, storage_reader=SafeReader(str(folder)), planner=_SafeFullPlanner(), no_dist=True)
    return state


def mismatches(state, folder, limit=4):
    """What keeps `state` from loading from `folder`: its tensors that the folder lacks or holds at another
    full size, as one short text ("" when it fits)."""
    from torch.distributed.checkpoint._nested_dict import flatten_state_dict
    saved = read_metadata(folder).state_dict_metadata
    wrong = []
    for key, value in flatten_state_dict(state)[0].items():
        if not isinstance(value, torch.Tensor):
            continue
        found = getattr(saved.get(key), "size", None)
        if found is None or tuple(found) != tuple(value.shape):
            wrong.append(f"{key} " + ("missing" if found is None else f"{tuple(found)} vs {tuple(value.shape)}"))
    return ", ".join(wrong[:limit]) + (f" and {len(wrong) - limit} more" if len(wrong) > limit else "")


def read_metadata(folder):
    return SafeReader(str(folder)).read_metadata()


def check_complete(folder):
    """Raise OSError or pickle.UnpicklingError unless `folder` holds a readable index and every data file it
    names, each long enough for its items (a shard lost or cut short by a copy or a full disk)."""
    needed = {}
    for info in read_metadata(folder).storage_data.values():
        needed[info.relative_path] = max(needed.get(info.relative_path, 0), info.offset + info.length)
    for name, size in needed.items():
        if Path(name).name != name:
            raise OSError(f"{METADATA} names a file outside its folder ({name})")
        if (Path(folder) / name).stat().st_size < size:
            raise OSError(f"{name} is cut short")

