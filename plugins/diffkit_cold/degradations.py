"""The cold degradations: blur, mask, pixelate and fade. Each is batched over per-sample t."""

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from diffkit import draws
from diffkit.degradation import per_sample
from diffkit_cold.cold import ColdDegradation, ColdOptions, option


@dataclass
class BlurOptions(ColdOptions):
    """Defaults from the sweep in bench/cold-defaults.toml: a gentle blur whose x_T keeps the digit's coarse shape,
    a mixture prior over x_T's top 49 principal components, and no prior noise (the network sharpens any noise
    into strokes). The paper's σ = 7 is the `paper-blur` preset."""

    T: int = 20
    kernel_size: int = 11
    sigma: float = 0.8
    schedule: Literal["constant", "incremental", "exponential"] = "constant"
    prior_resolution: int = 7
    prior_features: Literal["pool", "pca"] = "pca"
    prior_components: int = 20
    prior_noise: float = 0.0

    def __post_init__(self):
        super().__post_init__()
        if not 1 <= self.kernel_size <= 27 or self.kernel_size % 2 == 0 or self.sigma <= 0:
            raise ValueError("kernel_size must be odd and in 1..27, sigma positive")


class Blur(ColdDegradation):
    """Step i convolves with a Gaussian kernel of std sigma_i (circular padding keeps the image mean),
    so D(x0, t) is t successive blurs. Official MNIST setting: T = 20, kernel 11, sigma 7, constant."""

    Options = BlurOptions
    description = "repeated Gaussian blur (cold diffusion); a mixture prior over the blurred digit at T"
    default_sampler = "cold-naive"

    def sigmas(self):
        o = self.options
        i = torch.arange(1, o.T + 1, dtype=torch.float64, device="cpu")
        if o.schedule == "constant":
            return torch.full((o.T,), o.sigma, dtype=torch.float64, device="cpu")
        if o.schedule == "incremental":
            return o.sigma * i / o.T
        return o.sigma * 0.01 ** ((o.T - i) / o.T)  # exponential: from sigma/100 up to sigma

    def kernels(self, device="cpu"):
        """(T, k) normalised 1-D Gaussian kernels on `device`; the 2-D blur is separable."""
        k = self.options.kernel_size
        offsets = torch.arange(k, dtype=torch.float64, device="cpu") - k // 2
        g = torch.exp(-offsets[None] ** 2 / (2 * self.sigmas()[:, None] ** 2))
        return (g / g.sum(dim=1, keepdim=True)).float().to(device)

    def blur(self, x, kernel):
        c, pad = x.shape[1], self.options.kernel_size // 2
        x = F.conv2d(F.pad(x, (pad, pad, 0, 0), mode="circular"), kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
        return F.conv2d(F.pad(x, (0, 0, pad, pad), mode="circular"), kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)

    def degrade_mean(self, x0, t, params=None):
        out, x = x0.clone(), x0
        for i, kernel in enumerate(self.kernels(x0.device)[: int(t.max())], start=1):
            x = self.blur(x, kernel)
            out[t == i] = x[t == i]
        return out

    def prior_image(self, pooled, size):
        """x_T is smooth already: its bilinear upsampling is the image; blurring it again would flatten it."""
        return F.interpolate(pooled, size=size, mode="bilinear").clamp(-1, 1)


@dataclass
class MaskOptions(ColdOptions):
    """Defaults from bench/mask-sweep.toml: a soft hole that removes 5% of a pixel per step over T = 100 steps,
    noise growing to std 1 at T and a squared-error x̂0 (its scores: docs/benchmarks.md).
    A softer hole spreads the centre's fading over more steps, so the sampler draws the digit's centre in many
    small jumps instead of a few large ones; at T = 50 the same strength leaves the digit visible at T. The
    paper's hard, noiseless mask (T = 50) is the `paper-mask` preset."""

    T: int = 100
    centre: Literal["fixed", "random"] = "fixed"
    spread: float = option(1.0, "the hole's radius at step i is spread·i·size/T")
    strength: float = option(0.05, "share of a pixel each step's hole removes at its centre (1: the paper's hard hole)")
    fill: float = option(-1.0, "value the hole shows (-1: MNIST's black background)")
    prior_noise: float = 0.1
    noise: float = 1.0
    loss: Literal["l1", "l2"] = "l2"

    def __post_init__(self):
        super().__post_init__()
        if self.spread <= 0 or not -1 <= self.fill <= 1 or not 0 < self.strength <= 1:
            raise ValueError("spread must be positive, fill in [-1, 1] and strength in (0, 1]")


class Mask(ColdDegradation):
    """A Gaussian-shaped hole grows step by step: mask_t = Π_{i≤t} (1 − s·exp(−d²/(2 r_i²))), with d the
    distance to the centre (image centre, or per image at random), r_i growing linearly and s the strength:
    s = 1 (the paper's) masks the centre from t = 1; s < 1 fades it out over the steps."""

    Options = MaskOptions
    description = "a growing Gaussian-shaped hole (cold diffusion), centre fixed or random per image"

    def draw_params(self, n, generator=None):
        if self.options.centre == "fixed":
            return None
        return draws.rand((n, 2), generator)  # centre as a fraction of height and width

    def mask(self, t, shape, params):
        """(B, 1, H, W) mask, 1 where the image is kept: the running products of every step's factors, looked up
        at t. A fixed centre computes them once for the batch, so a step costs O(T·H·W), not O(B·T·H·W)."""
        h, w = shape[-2:]
        device = t.device
        centre = params if params is not None else torch.full((1, 2), 0.5, device=device)
        ys, xs = torch.arange(h, device=device) + 0.5, torch.arange(w, device=device) + 0.5
        d2 = (ys[None, :, None] - centre[:, 0, None, None] * h) ** 2 + (xs[None, None, :] - centre[:, 1, None, None] * w) ** 2
        radius = self.options.spread * torch.arange(1, self.T + 1, device=device) * max(h, w) / self.T  # (T,)
        factors = 1 - self.options.strength * torch.exp(-d2[:, None] / (2 * radius[None, :, None, None] ** 2))  # (C, T, H, W)
        masks = torch.cat([torch.ones_like(factors[:, :1]), factors.cumprod(dim=1)], dim=1)  # (C, T + 1, H, W)
        return masks.expand(len(t), -1, -1, -1)[torch.arange(len(t), device=device), t][:, None]  # C is 1 or B

    def degrade_mean(self, x0, t, params=None):
        m = self.mask(t, x0.shape, params).to(x0.dtype)
        return m * x0 + (1 - m) * self.options.fill


@dataclass
class PixelateOptions(ColdOptions):
    """Defaults from the sweep: stop at 4×4 (T = 3) and fit a 20-component mixture to those 16 pixels; the
    paper's 1×1 (T = 5) is the `paper-pixelate` preset."""

    T: int = 3
    factor: float = 2.0  # the image shrinks by this factor per step (official: 2)
    prior_resolution: int = 4
    prior_components: int = 20
    prior_noise: float = 0.05

    def __post_init__(self):
        super().__post_init__()
        if self.factor <= 1:
            raise ValueError(f"factor must be above 1, got {self.factor}")


class Pixelate(ColdDegradation):
    """Step t area-downsamples to size/factor^t (at least 1 pixel) and nearest-upsamples back."""

    Options = PixelateOptions
    description = "pixelation: downsample by factor^t and nearest-upsample (cold diffusion)"
    default_sampler = "cold-naive"
    prior_upsample = "nearest"  # x_T is made of blocks

    def size_at(self, t, size):
        return max(1, round(size / self.options.factor**t))

    def degrade_mean(self, x0, t, params=None):
        out = x0.clone()
        h, w = x0.shape[-2:]
        for step in t.unique().tolist():
            if step == 0:
                continue
            pick = t == step
            small = F.adaptive_avg_pool2d(x0[pick], (self.size_at(step, h), self.size_at(step, w)))
            out[pick] = F.interpolate(small, size=(h, w), mode="nearest")
        return out


@dataclass
class FadeOptions(ColdOptions):
    T: int = 20
    towards: Literal["mean", "black"] = "mean"  # the constant level: each image's mean, or -1
    schedule: Literal["linear", "cosine"] = "cosine"
    prior_noise: float = 0.1
    noise: float = 1.0  # noise growing to std 1 at T, and x̂0 learnt with a squared error: what makes fade
    loss: Literal["l1", "l2"] = "l2"  # generate every digit (the sweep); the paper-like fade is `paper-fade`


class Fade(ColdDegradation):
    """x_t = a_t·x0 + (1 − a_t)·c with a_t falling from 1 to 0: the image fades to a constant c."""

    Options = FadeOptions
    description = "fade towards a constant level (the image mean, or black) over T steps"

    def keep(self, t):
        frac = t.float() / self.T
        return 1 - frac if self.options.schedule == "linear" else torch.cos(frac * math.pi / 2)

    def degrade_mean(self, x0, t, params=None):
        level = x0.mean(dim=(-2, -1), keepdim=True) if self.options.towards == "mean" else torch.full_like(x0, -1.0)
        a = per_sample(self.keep(t), x0)
        return a * x0 + (1 - a) * level
