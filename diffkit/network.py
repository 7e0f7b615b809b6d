"""The restoration-network contract: an nn.Module R(x_t, t) with x_t's shape in and out.

diffkit moves the module to the run's device; tensors made in `forward` take x_t's or t's device."""

import math

import torch
from torch import nn

from diffkit.degradation import NoOptions


class Network(nn.Module):
    Options = NoOptions
    description = ""

    def __init__(self, options, channels, image_size):
        super().__init__()
        self.options = options
        self.channels = channels
        self.image_size = image_size

    def forward(self, x_t, t):
        raise NotImplementedError


def sinusoidal_embedding(t, dim, max_period=10000.0):
    """Transformer-style features of integer or real timesteps t (B,) -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)
