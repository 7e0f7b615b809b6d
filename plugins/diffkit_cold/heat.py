"""Heat dissipation (Rissanen et al. 2023, "Generative modelling with inverse heat dissipation").

D(x0, t) solves the heat equation on the image for time τ_t = σ_t²/2 with reflecting (Neumann) borders: in
the DCT-II basis each frequency (k, l) decays by exp(−π²(k²/H² + l²/W²)·τ_t). Far from the borders this is
a Gaussian blur of std σ_t, and the image mean (the DC coefficient) is kept exactly. σ_t grows geometrically
from sigma_min at t = 1 to sigma_max at t = T; t = 0 is the identity.

Defaults: noise growing to std 1 at T, x̂0 learnt with a squared error, sampled by `cold` (DDIM-like), as in
blurring diffusion (Hoogeboom & Salimans 2023): every digit at the quick budget (docs/benchmarks.md). The
paper's small noise (0.01) with fresh noise δ = 0.01 per step is the `paper-heat` preset: with an
x0-predicting network and a one-jump-per-step sampler from an almost flat x_T it collapses onto "1" (Rissanen
et al. predict one step back and take hundreds of steps).
"""

import math
from dataclasses import dataclass
from typing import Literal

import torch

from diffkit.degradation import lookup
from diffkit_cold.cold import ColdDegradation, ColdOptions


@dataclass
class HeatOptions(ColdOptions):
    T: int = 50
    sigma_min: float = 0.5
    sigma_max: float = 20.0
    noise: float = 1.0  # Rissanen et al.'s 0.01 is the `paper-heat` preset
    loss: Literal["l1", "l2"] = "l2"
    prior_noise: float = 0.0

    def __post_init__(self):
        super().__post_init__()
        if not 0 < self.sigma_min <= self.sigma_max <= 1000:
            raise ValueError("need 0 < sigma_min <= sigma_max <= 1000")


def dct_matrix(n, device, dtype):
    """The orthonormal DCT-II matrix (n, n): row k is the k-th cosine; C @ x transforms along a dimension."""
    k = torch.arange(n, dtype=torch.float64, device="cpu")[:, None]
    i = torch.arange(n, dtype=torch.float64, device="cpu")[None, :]
    c = torch.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2 / n)
    c[0] /= math.sqrt(2)
    return c.to(device=device, dtype=dtype)


class Heat(ColdDegradation):
    Options = HeatOptions
    description = "heat dissipation (Rissanen et al. 2023): DCT blur with geometric σ, plus noise"

    def sigmas(self):
        """σ_t for t = 0..T (σ_0 = 0: the identity), as a CPU float64 table."""
        o = self.options
        t = torch.arange(1, o.T + 1, dtype=torch.float64, device="cpu")
        ratio = (t - 1) / max(o.T - 1, 1)
        return torch.cat([torch.zeros(1, dtype=torch.float64, device="cpu"),
                          o.sigma_min * (o.sigma_max / o.sigma_min) ** ratio])

    def degrade_mean(self, x0, t, params=None):
        h, w = x0.shape[-2:]
        ch, cw = dct_matrix(h, x0.device, x0.dtype), dct_matrix(w, x0.device, x0.dtype)
        freq_h = (math.pi * torch.arange(h, device=x0.device, dtype=x0.dtype) / h) ** 2
        freq_w = (math.pi * torch.arange(w, device=x0.device, dtype=x0.dtype) / w) ** 2
        tau = (lookup(self.sigmas(), t) ** 2 / 2).to(x0.dtype)
        decay = torch.exp(-(freq_h[:, None] + freq_w[None, :]) * tau[:, None, None, None])  # (B, 1, H, W)
        blurred = ch.T @ (decay * (ch @ x0 @ cw.T)) @ cw
        return torch.where((t == 0).view(-1, 1, 1, 1), x0, blurred)  # t = 0 exactly, not up to rounding
