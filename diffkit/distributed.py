"""Several processes under torchrun: one process group, the work split by rank, rank 0 writes.

`torchrun --nproc-per-node N -m diffkit train ...` sets RANK, WORLD_SIZE and LOCAL_RANK; diffkit joins
the group on first use (nccl on GPUs, gloo on the CPU). Without torchrun every function here is the
one-process case, so the same code runs a laptop, a GPU and a cluster.
"""

import datetime
import os


def _torch():
    """torch and torch.distributed, imported on first use: `diffkit --version` needs neither."""
    import torch
    import torch.distributed as dist

    return torch, dist


def rank():
    return int(os.environ.get("RANK", 0))


def world_size():
    return int(os.environ.get("WORLD_SIZE", 1))


def is_main():
    """Whether this process writes files and draws progress bars."""
    return rank() == 0


def setup(device):
    """Join torchrun's process group once (a no-op in one process)."""
    _, dist = _torch()
    if world_size() > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=30),
                                device_id=device if device.type == "cuda" else None)


def active():
    return world_size() > 1 and _torch()[1].is_initialized()


def shard(n):
    """This rank's slice of n items split into world_size near-equal contiguous parts."""
    size, r = world_size(), rank()
    return slice(n * r // size, n * (r + 1) // size)


def any_rank(flags, device):
    """For each flag: true on every rank when it is true on any rank (so all ranks stop at the same step)."""
    if not active():
        return [bool(f) for f in flags]
    torch, dist = _torch()
    value = torch.tensor([1.0 if f else 0.0 for f in flags], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return [bool(v) for v in value.tolist()]


def mean(value, device):
    """The mean of a float over ranks."""
    if not active():
        return value
    torch, dist = _torch()
    tensor = torch.tensor([float(value)], device=device, dtype=torch.float64)
    dist.all_reduce(tensor)
    return tensor.item() / world_size()


def gather(obj):
    """Every rank's `obj`, in rank order, on every rank."""
    if not active():
        return [obj]
    out = [None] * world_size()
    _torch()[1].all_gather_object(out, obj)
    return out


def barrier():
    if active():
        _torch()[1].barrier()


PEER_LOST = ("Connection reset by peer", "Connection closed by peer", "Broken pipe", "Connection refused",
             "NCCL communicator was aborted", "Socket Timeout", "timed out")


def peer_lost(exc):
    """The short reason, if `exc` is a collective failing because another process of the job stopped (killed,
    crashed or hung): what gloo and NCCL raise on the ranks left behind; else None."""
    if not isinstance(exc, RuntimeError) or world_size() < 2:
        return None
    return next((phrase for phrase in PEER_LOST if phrase in str(exc)), None)
