"""The coursework CNN: 7×7 conv blocks with LayerNorm and GELU, time (and class) features added to every block.

No down-sampling, so every block sees the full image; ~0.3 M parameters with hidden (16, 32, 32, 16),
most of them in the per-pixel LayerNorm affines.
"""

from dataclasses import dataclass

from torch import nn

from diffkit.network import LabelEmbedding, Network, sinusoidal_embedding


@dataclass
class CNNOptions:
    hidden: tuple[int, ...] = (16, 32, 32, 16)
    kernel_size: int = 7
    time_features: int = 128

    def __post_init__(self):
        if not 1 <= len(self.hidden) <= 16 or not 1 <= min(self.hidden) <= max(self.hidden) <= 1024:
            raise ValueError("hidden needs 1 to 16 channel counts in 1..1024")
        if not 1 <= self.kernel_size <= 27 or self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and in 1..27, got {self.kernel_size}")
        if not 2 <= self.time_features <= 4096:
            raise ValueError(f"time_features must be in 2..4096, got {self.time_features}")


class CNNBlock(nn.Module):
    def __init__(self, shape, in_channels, out_channels, kernel_size):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2),
            nn.LayerNorm((out_channels, *shape)),
            nn.GELU(),
        )

    def forward(self, x):
        return self.net(x)


class CNN(Network):
    Options = CNNOptions
    description = "coursework CNN: 7×7 conv + LayerNorm + GELU blocks, sinusoidal time MLP (~0.3 M params)"

    def __init__(self, options, channels, image_size, classes=0):
        super().__init__(options, channels, image_size, classes)
        o = options
        shape = (image_size, image_size)
        widths = (channels, *o.hidden)
        self.blocks = nn.ModuleList(
            CNNBlock(shape, a, b, o.kernel_size) for a, b in zip(widths[:-1], widths[1:])
        )
        self.time_mlp = nn.Sequential(
            nn.Linear(o.time_features, o.time_features), nn.GELU(), nn.Linear(o.time_features, o.time_features)
        )
        self.time_proj = nn.ModuleList(nn.Linear(o.time_features, width) for width in o.hidden)
        self.out = nn.Conv2d(o.hidden[-1], channels, 3, padding=1)
        if classes:
            self.label_embedding = LabelEmbedding(classes, o.time_features)

    def forward(self, x_t, t, labels=None):
        emb = self.time_mlp(sinusoidal_embedding(t, self.options.time_features))
        if self.classes:
            emb = emb + self.label_embedding(labels, len(x_t), x_t.device)
        h = x_t
        for block, proj in zip(self.blocks, self.time_proj):
            h = block(h) + proj(emb)[:, :, None, None]
        return self.out(h)
