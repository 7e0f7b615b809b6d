"""Random draws that give a seed the same numbers on every device, and the one seed formula.

A draw is made on its generator's device (the CPU for the generators diffkit makes) and then moved to
where it is used. The CPU and a GPU generate different streams from one seed; drawing on the CPU keeps
a seed's samples the same everywhere and keeps `--resume` bit-exact on any device and number of ranks.
"""

import torch


def seeded(seed, index):
    """The CPU generator for draw number `index` (a training step, a sampling batch) of a run seeded `seed`."""
    return torch.Generator().manual_seed(seed * 1_000_003 + index)


def _source(generator, device):
    return generator.device if generator is not None else device


def _place(tensor, device):
    return tensor if device is None else tensor.to(device)


def randn(shape, generator=None, device=None):
    """Standard normal draws of `shape`, made on the generator's device and placed on `device`."""
    return _place(torch.randn(shape, generator=generator, device=_source(generator, device)), device)


def rand(shape, generator=None, device=None):
    """Uniform [0, 1) draws of `shape`, made on the generator's device and placed on `device`."""
    return _place(torch.rand(shape, generator=generator, device=_source(generator, device)), device)


def randint(low, high, shape, generator=None, device=None):
    """Integers in [low, high) of `shape`, made on the generator's device and placed on `device`."""
    return _place(torch.randint(low, high, shape, generator=generator, device=_source(generator, device)), device)


def to_device(value, device):
    """A tensor, a dict/list/tuple of tensors, or None, moved to `device` (per-image parameters, say)."""
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {k: to_device(v, device) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_device(v, device) for v in value)
    return value


def take(value, index):
    """Rows `index` (a slice) of a batch-first tensor, or of each tensor in a dict/list/tuple; None stays None."""
    if isinstance(value, torch.Tensor):
        return value[index]
    if isinstance(value, dict):
        return {k: take(v, index) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(take(v, index) for v in value)
    return value
