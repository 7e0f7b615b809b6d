"""Gaussian diffusion (Ho et al. 2020), named as in openai/improved-diffusion.

Arrays are indexed by t = 0..T with t = 0 the clean image: alphas_cumprod[0] = 1, betas[0] = 0,
so `alphas_cumprod[t]` is ᾱ_t of the papers without off-by-one shifts. They are float64 CPU tables;
`lookup` brings the entries a batch needs to the batch's device.
"""

import math
from dataclasses import dataclass
from typing import Literal

import torch

from diffkit import draws
from diffkit.degradation import Degradation, lookup, per_sample


@dataclass
class GaussianOptions:
    T: int = 1000
    schedule: Literal["linear", "cosine"] = "linear"
    beta_start: float = 1e-4
    beta_end: float = 0.02
    prediction: Literal["eps", "x0", "v"] = "eps"
    min_snr_gamma: float = 0.0  # > 0: min-SNR-γ loss weighting (Hang et al. 2023), e.g. 5; 0: unweighted

    def __post_init__(self):
        if not 1 <= self.T <= 100_000:
            raise ValueError(f"T must be between 1 and 100000, got {self.T}")
        if not 0 < self.beta_start < self.beta_end < 1:
            raise ValueError("need 0 < beta_start < beta_end < 1")
        if self.min_snr_gamma < 0:
            raise ValueError(f"min_snr_gamma must be >= 0, got {self.min_snr_gamma}")


def linear_betas(T, beta_start, beta_end):
    """Ho et al.'s linear schedule; endpoints scaled by 1000/T so any T spans the same noise."""
    scale = 1000 / T
    return torch.linspace(scale * beta_start, scale * beta_end, T, dtype=torch.float64, device="cpu").clamp(max=0.999)


def cosine_betas(T, s=0.008):
    """Nichol & Dhariwal's cosine schedule: ᾱ(t) = cos²((t/T + s)/(1 + s) · π/2) / ᾱ(0)."""
    def f(t):
        return math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2

    return torch.tensor([min(1 - f(t) / f(t - 1), 0.999) for t in range(1, T + 1)], dtype=torch.float64, device="cpu")


class GaussianDiffusion(Degradation):
    Options = GaussianOptions
    default_sampler = "ddim"
    description = "Gaussian noise, DDPM (Ho et al. 2020): linear or cosine schedule, eps/x0/v target"

    def __init__(self, options=None):
        super().__init__(options)
        o = self.options
        betas = linear_betas(o.T, o.beta_start, o.beta_end) if o.schedule == "linear" else cosine_betas(o.T)
        self.betas = torch.cat([torch.zeros(1, dtype=torch.float64, device="cpu"), betas])
        self.alphas_cumprod = torch.cumprod(1 - self.betas, dim=0)

    def signal_std(self, t):
        """sqrt(ᾱ_t) for steps t (B,), on t's device."""
        return lookup(self.alphas_cumprod, t).sqrt()

    def degrade_mean(self, x0, t, params=None):
        return per_sample(self.signal_std(t), x0) * x0

    def noise_std(self, t):
        return (1 - lookup(self.alphas_cumprod, t)).sqrt()

    def q_sample(self, x0, t, noise):
        """z_t = sqrt(ᾱ_t)·x0 + sqrt(1 − ᾱ_t)·ε."""
        return self.degrade(x0, t, noise=noise)

    def training_losses(self, network, x0, t, noise, params=None):
        """‖target − network(z_t, t)‖² per image, with target ε, x0 or v."""
        x_t = self.q_sample(x0, t, noise)
        target = {"eps": noise, "x0": x0, "v": self.velocity(x0, noise, t)}[self.options.prediction]
        return self.loss_weight(t).to(x0.dtype) * (network(x_t, t) - target).pow(2).flatten(1).mean(1)

    def loss_weight(self, t):
        """min-SNR-γ: each step's loss weighted as if its x0 error counted min(SNR, γ) times, SNR = ᾱ/(1 − ᾱ);
        for ε and v targets that is min(SNR, γ)/SNR and min(SNR, γ)/(SNR + 1). Ones when γ = 0."""
        gamma = self.options.min_snr_gamma
        if not gamma:
            return torch.ones(t.shape, device=t.device)
        alpha = lookup(self.alphas_cumprod, t)
        snr = alpha / (1 - alpha).clamp(min=1e-20)
        clipped = snr.clamp(max=gamma)
        return {"x0": clipped, "eps": clipped / snr, "v": clipped / (snr + 1)}[self.options.prediction]

    def velocity(self, x0, noise, t):
        """v = sqrt(ᾱ_t)·ε − sqrt(1 − ᾱ_t)·x0 (Salimans & Ho 2022)."""
        return per_sample(self.signal_std(t), x0) * noise - per_sample(self.noise_std(t), x0) * x0

    def predict_x0(self, network, x_t, t):
        out = network(x_t, t)
        if self.options.prediction == "x0":
            return out
        signal, noise = per_sample(self.signal_std(t), x_t), per_sample(self.noise_std(t), x_t)
        if self.options.prediction == "v":
            return signal * x_t - noise * out
        return (x_t - noise * out) / signal

    def q_posterior_mean_variance(self, x0, x_t, t, s):
        """Mean and variance of q(x_s | x_t, x0) for s < t (s = t − 1 is Ho et al.'s posterior)."""
        a_t, a_s = lookup(self.alphas_cumprod, t), lookup(self.alphas_cumprod, s)
        beta = 1 - a_t / a_s  # the effective β of the jump s -> t
        coef_x0 = a_s.sqrt() * beta / (1 - a_t)
        coef_xt = (1 - beta).sqrt() * (1 - a_s) / (1 - a_t)
        variance = beta * (1 - a_s) / (1 - a_t)
        mean = per_sample(coef_x0, x0) * x0 + per_sample(coef_xt, x_t) * x_t
        return mean, per_sample(variance, x_t)

    def sample_prior(self, n, shape, generator=None):
        return draws.randn((n, *shape), generator)
