"""Where a run computes and in what precision: `--device`, `--precision` and `--compile`, resolved once.

`auto` picks CUDA, then Apple's MPS, then the CPU. Precision is autocast over the network only: the
degradation, the sampler's arithmetic and the weights stay in float32, so a checkpoint or a sample file
does not depend on it. fp16 trains with a gradient scaler; bf16 needs none.
"""

import contextlib
import os

import torch

from diffkit.config import PRECISIONS
from diffkit.errors import DiffkitError

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def _mps_available():
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def resolve_device(name="auto"):
    """A torch.device from auto|cpu|cuda|cuda:N|mps, or a one-line error when it is not there.

    Under torchrun, `auto` and `cuda` mean this process's GPU, cuda:$LOCAL_RANK. A torch.device that names one
    device (cpu, mps, cuda:N) is already resolved and comes back as it is."""
    if isinstance(name, torch.device) and (name.type != "cuda" or name.index is not None):
        return name
    name = (str(name) if isinstance(name, torch.device) else name or "auto").strip().lower()
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if _mps_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise DiffkitError(f"unknown device {name!r}; choose auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DiffkitError(f"--device {name}: CUDA is not available on this machine; use --device cpu or auto")
        index = device.index if device.index is not None else local_rank % torch.cuda.device_count()
        if index >= torch.cuda.device_count():
            raise DiffkitError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        device = torch.device("cuda", index)
        torch.cuda.set_device(device)
    elif device.type == "mps" and not _mps_available():
        raise DiffkitError(f"--device {name}: MPS is not available on this machine; use --device cpu or auto")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise DiffkitError(f"unknown device {name!r}; choose auto, cpu, cuda, cuda:N or mps")
    return device


def resolve_precision(name, device):
    """fp32|bf16|fp16 for `device`; `auto` is bf16 on GPUs that support it and fp32 elsewhere."""
    name = (name or "auto").strip().lower()
    if name not in PRECISIONS:
        raise DiffkitError(f"unknown precision {name!r}; choose {', '.join(PRECISIONS)}")
    if name == "auto":
        return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    return name


def autocast(device, precision):
    """The autocast context for a network call in `precision` (nothing for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=DTYPES[precision])


def grad_scaler(device, precision):
    """A gradient scaler, active for fp16 only (bf16 has float32's range)."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")


class AutocastNetwork(torch.nn.Module):
    """A network called under autocast, returning float32: what samplers and losses see.

    Only wraps; the wrapped network's state_dict is saved, never this one's."""

    def __init__(self, network, device, precision):
        super().__init__()
        self.network, self.device, self.precision = network, device, precision

    def forward(self, x_t, t, labels=None):
        with autocast(self.device, self.precision):
            out = self.network(x_t, t) if labels is None else self.network(x_t, t, labels)
            return out.float()
