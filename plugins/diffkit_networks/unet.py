"""A UNet in the style of Ho et al. 2020: ResNet blocks, GroupNorm, time (and class) embedding, self-attention
at the lowest resolution. Sized for 28×28 on a CPU: 28 -> 14 -> 7 with channel_mults (1, 2, 2).

patch_size > 1 folds p×p pixel patches into channels first (pixel_unshuffle, as in DiT's patching):
the full-resolution convolutions, which dominate CPU time, then run at 1/p² of the pixels.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from diffkit.network import LabelEmbedding, Network, sinusoidal_embedding


@dataclass
class UNetOptions:
    base_channels: int = 32
    channel_mults: tuple[int, ...] = (1, 2, 2)
    res_blocks: int = 1
    attention: bool = True
    heads: int = 4
    groups: int = 8
    dropout: float = 0.0
    patch_size: int = 1

    def __post_init__(self):
        if not 1 <= self.base_channels <= 1024 or not 1 <= len(self.channel_mults) <= 6 \
                or not 1 <= min(self.channel_mults) <= max(self.channel_mults) <= 16:
            raise ValueError("base_channels must be in 1..1024, channel_mults 1 to 6 values in 1..16")
        if any(self.base_channels * m % self.groups for m in self.channel_mults):
            raise ValueError(f"every level's channels must be divisible by groups={self.groups}")
        if not 1 <= self.res_blocks <= 8:
            raise ValueError(f"res_blocks must be in 1..8, got {self.res_blocks}")
        if not 1 <= self.patch_size <= 7:
            raise ValueError(f"patch_size must be in 1..7, got {self.patch_size}")
        if self.heads < 1 or self.groups < 1 or not 0 <= self.dropout < 1:
            raise ValueError("heads and groups must be positive, dropout in [0, 1)")


class ResBlock(nn.Module):
    def __init__(self, in_channels, out_channels, time_dim, groups, dropout):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.time = nn.Linear(time_dim, out_channels)
        self.norm2 = nn.GroupNorm(groups, out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x, emb):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time(emb)[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return h + self.skip(x)


class Attention(nn.Module):
    def __init__(self, channels, heads, groups):
        super().__init__()
        self.heads = heads
        self.norm = nn.GroupNorm(groups, channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x):
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w).transpose(-1, -2).unbind(1)
        out = F.scaled_dot_product_attention(q, k, v)
        return x + self.proj(out.transpose(-1, -2).reshape(b, c, h, w))


class UNet(Network):
    Options = UNetOptions
    description = "UNet (Ho et al. style): ResNet blocks, GroupNorm, time embedding, attention at lowest resolution"

    def __init__(self, options, channels, image_size, classes=0):
        super().__init__(options, channels, image_size, classes)
        o = options
        base, time_dim = o.base_channels, 4 * o.base_channels
        widths = [base * m for m in o.channel_mults]
        self.time_mlp = nn.Sequential(nn.Linear(base, time_dim), nn.SiLU(), nn.Linear(time_dim, time_dim))
        if image_size % o.patch_size:
            raise ValueError(f"image_size {image_size} is not divisible by patch_size {o.patch_size}")
        patch_channels = channels * o.patch_size**2
        self.conv_in = nn.Conv2d(patch_channels, base, 3, padding=1)

        self.down, skip_widths, width = nn.ModuleList(), [base], base
        for level, out in enumerate(widths):
            for _ in range(o.res_blocks):
                self.down.append(ResBlock(width, out, time_dim, o.groups, o.dropout))
                width = out
                skip_widths.append(width)
            if level < len(widths) - 1:
                self.down.append(nn.Conv2d(width, width, 3, stride=2, padding=1))
                skip_widths.append(width)

        self.mid1 = ResBlock(width, width, time_dim, o.groups, o.dropout)
        self.mid_attention = Attention(width, o.heads, o.groups) if o.attention else nn.Identity()
        self.mid2 = ResBlock(width, width, time_dim, o.groups, o.dropout)

        self.up = nn.ModuleList()
        for level, out in reversed(list(enumerate(widths))):
            for _ in range(o.res_blocks + 1):
                self.up.append(ResBlock(width + skip_widths.pop(), out, time_dim, o.groups, o.dropout))
                width = out
            if level > 0:
                self.up.append(nn.Conv2d(width, width, 3, padding=1))  # after nearest upsampling

        self.norm_out = nn.GroupNorm(o.groups, width)
        self.conv_out = nn.Conv2d(width, patch_channels, 3, padding=1)
        if classes:
            self.label_embedding = LabelEmbedding(classes, time_dim)

    def forward(self, x_t, t, labels=None):
        emb = self.time_mlp(sinusoidal_embedding(t, self.options.base_channels))
        if self.classes:
            emb = emb + self.label_embedding(labels, len(x_t), x_t.device)
        h = self.conv_in(F.pixel_unshuffle(x_t, self.options.patch_size))
        skips = [h]
        for layer in self.down:
            h = layer(h, emb) if isinstance(layer, ResBlock) else layer(h)
            skips.append(h)
        h = self.mid2(self.mid_attention(self.mid1(h, emb)), emb)
        for layer in self.up:
            if isinstance(layer, ResBlock):
                h = layer(torch.cat([h, skips.pop()], dim=1), emb)
            else:  # upsample to the next skip's size (7 -> 14 -> 28, also for odd sizes)
                h = layer(F.interpolate(h, size=skips[-1].shape[-2:], mode="nearest"))
        return F.pixel_shuffle(self.conv_out(F.silu(self.norm_out(h))), self.options.patch_size)
