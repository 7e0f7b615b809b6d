"""Fast deterministic samplers for every degradation of the form D(x0, t) = a_t·x0 + b_t·ε: the Gaussian
DDPM (a = sqrt(ᾱ_t), b = sqrt(1 − ᾱ_t)) and flow matching (a = 1 − t/T, b = t/T).

All three solve the probability-flow ODE from the network's x0 estimate D and the noise estimate
ε̂ = (x − a·D)/b, written so that a = 0 (flow's pure-noise end) stays finite:
- `euler`: first order, x_t = a_t·D + b_t·ε̂ (for a Gaussian this is DDIM with eta = 0);
- `heun`: Karras et al. 2022's second-order correction in the coordinates x/a, σ = b/a, two network
  evaluations a step, and a plain Euler step out of t = T and into t = 0;
- `dpm++2m`: DPM-Solver++(2M) (Lu et al. 2022), second-order multistep in log-SNR λ = log(a/b), one network
  evaluation a step, first order on its first and last steps.
`spacing` chooses the integer timesteps: evenly in t, evenly in log-SNR, or Karras et al.'s ρ = 7 spacing of σ
(from σ = 80 down; the first step still starts at T).
"""

import math
from dataclasses import dataclass
from typing import Literal

import torch

from diffkit.sampler import Sampler


@dataclass
class SolverOptions:
    spacing: Literal["time", "logsnr", "karras"] = "time"


def coefficients(degradation, t, device):
    """(a_t, b_t) as Python floats."""
    tt = torch.full((1,), t, dtype=torch.long, device=device)
    return float(degradation.signal_std(tt)), float(degradation.noise_std(tt))


def spaced_timesteps(degradation, steps, spacing):
    """[T, ..., 0]: `steps` jumps with targets spaced evenly in t, in log-SNR or in Karras σ, each mapped to
    the integer t whose value is nearest; repeated timesteps are dropped (so a fine grid may take fewer)."""
    T = degradation.T
    if not 1 <= steps <= T:
        raise ValueError(f"steps must be between 1 and T={T}, got {steps}")
    if spacing == "time" or steps == 1:
        return torch.linspace(T, 0, steps + 1, device="cpu").round().long().tolist()
    t = torch.arange(1, T + 1, device="cpu")
    a, b = degradation.signal_std(t).double().cpu(), degradation.noise_std(t).double().cpu()
    if spacing == "logsnr":
        values = (a.clamp(min=1e-12) / b).log()  # increasing as t falls
        targets = torch.linspace(float(values[-1]), float(values[0]), steps, dtype=torch.float64)
    else:  # karras: σ = b/a, ρ = 7, from at most EDM's σ_max = 80 (the steps above it change almost nothing)
        values = (b / a.clamp(min=1e-12)).clamp(max=1e6) ** (1 / 7)
        targets = torch.linspace(min(float(values[-1]), 80 ** (1 / 7)), float(values[0]), steps, dtype=torch.float64)
    nearest = (values[None, :] - targets[:, None]).abs().argmin(dim=1) + 1
    grid = [T] + sorted({int(n) for n in nearest[1:]}, reverse=True) + [0]
    return [g for i, g in enumerate(grid) if i == 0 or g < grid[i - 1]]


class ODESolver(Sampler):
    Options = SolverOptions

    def supports(self, degradation):
        return degradation.signal_std(torch.tensor([degradation.T], device="cpu")) is not None

    def default_steps(self, degradation):
        return min(self.default_step_count, degradation.T)

    def timesteps(self, degradation, steps):
        return spaced_timesteps(degradation, steps, self.options.spacing)

    def nfe(self, degradation, steps):
        return len(self.timesteps(degradation, steps)) - 1

    def denoise(self, denoiser, x, t):
        """D = x̂0 (clipped to the data range) and ε̂ at step t."""
        a, b = coefficients(denoiser.degradation, t, x.device)
        x0 = denoiser(x, t)
        return x0, (x - a * x0) / b


class EulerSampler(ODESolver):
    description = "Euler on the probability-flow ODE (first order; DDIM for Gaussians); 50 steps by default"
    default_step_count = 50

    def step(self, denoiser, x, t, s, state, generator=None, params=None):
        x0, eps = self.denoise(denoiser, x, t)
        a_s, b_s = coefficients(denoiser.degradation, s, x.device)
        return a_s * x0 + b_s * eps


class HeunSampler(ODESolver):
    description = ("Heun's second-order ODE solver (Karras et al. 2022); 2 NFE a step, Euler out of t = T and "
                   "into t = 0")
    default_step_count = 25

    def nfe(self, degradation, steps):
        return max(1, 2 * super().nfe(degradation, steps) - 2)

    def step(self, denoiser, x, t, s, state, generator=None, params=None):
        degradation = denoiser.degradation
        x0, eps = self.denoise(denoiser, x, t)
        a_t, b_t = coefficients(degradation, t, x.device)
        a_s, b_s = coefficients(degradation, s, x.device)
        euler = a_s * x0 + b_s * eps
        # Euler into the data (σ = 0) and out of t = T: there σ_T is infinite (flow) or huge (σ = 2·10⁴ on the
        # cosine schedule), and averaging the slopes at both ends of that jump magnifies the network's error
        if s == 0 or t == degradation.T:
            return euler
        _, eps_s = self.denoise(denoiser, euler, s)
        # x/a moves by (σ_s − σ_t)·mean(ε̂_t, ε̂_s), with σ = b/a
        return (a_s / a_t) * x + (b_s - a_s * b_t / a_t) * (eps + eps_s) / 2


class DPMSolverPP2M(ODESolver):
    description = "DPM-Solver++(2M) (Lu et al. 2022): second-order multistep in log-SNR; 20 steps by default"
    default_step_count = 20

    def begin(self, degradation, timesteps):
        return {"previous": None}  # (x0 estimate, h) of the last step

    def step(self, denoiser, x, t, s, state, generator=None, params=None):
        x0, _ = self.denoise(denoiser, x, t)
        a_t, b_t = coefficients(denoiser.degradation, t, x.device)
        a_s, b_s = coefficients(denoiser.degradation, s, x.device)
        h = _log_snr(a_s, b_s) - _log_snr(a_t, b_t)
        d, previous = x0, state["previous"]
        if previous is not None and s > 0:  # second order from the last two estimates
            r = previous[1] / h
            d = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * previous[0]
        state["previous"] = (x0, h)
        return (b_s / b_t) * x + (a_s - a_t * b_s / b_t) * d  # = (b_s/b_t)·x − a_s·(e^{−h} − 1)·d


def _log_snr(a, b):
    """λ = log(a/b), finite at a = 0 and b = 0 (flow's noise end, the data end)."""
    return math.log(max(a, 1e-12) / max(b, 1e-12))
