"""The restoration-network contract: an nn.Module R(x_t, t) with x_t's shape in and out.

A network that can be class-conditional takes `classes` in its constructor and `labels` in `forward`:
labels (B,) are class indices 0..classes-1, or `classes` itself, the null label ("no class"), which training
shows it with probability cond_dropout and classifier-free guidance contrasts with; labels=None means the null
label. diffkit passes `classes` only to conditional runs, so a network without it still trains unconditionally.

diffkit moves the module to the run's device; tensors made in `forward` take x_t's or t's device."""

import math

import torch
from torch import nn

from diffkit.degradation import NoOptions


class Network(nn.Module):
    Options = NoOptions
    description = ""

    def __init__(self, options, channels, image_size, classes=0):
        super().__init__()
        self.options = options
        self.channels = channels
        self.image_size = image_size
        self.classes = classes  # 0: unconditional

    def forward(self, x_t, t, labels=None):
        raise NotImplementedError


class LabelEmbedding(nn.Module):
    """Class labels as vectors to add to a time embedding: `classes` rows and one for the null label.

    Zero at initialisation, so a conditional network starts as the unconditional one and learns what a label
    adds; created after a network's other layers, so those draw the same initial weights either way."""

    def __init__(self, classes, dim):
        super().__init__()
        self.null = classes
        self.table = nn.Embedding(classes + 1, dim)
        nn.init.zeros_(self.table.weight)

    def forward(self, labels, batch, device):
        if labels is None:
            labels = torch.full((batch,), self.null, dtype=torch.long, device=device)
        return self.table(labels)


def sinusoidal_embedding(t, dim, max_period=10000.0):
    """Transformer-style features of integer or real timesteps t (B,) -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)
