"""Flow matching / rectified flow (Lipman et al. 2023, Liu et al. 2023) as a degradation.

x_t = (1 − τ)·x0 + τ·ε with τ = t/T on a fine grid (T = 1000): a straight line from the data to Gaussian
noise. The network predicts the velocity v = ε − x0 (or x0); x̂0 = x_t − τ·v̂. Training draws τ uniformly or
from a logit-normal (Esser et al. 2024), which spends more updates on the middle of the path. The prior is
N(0, I), and the ODE solvers euler, heun and dpm++2m sample it.
"""

from dataclasses import dataclass
from typing import Literal

import torch

from diffkit import draws
from diffkit.degradation import Degradation, per_sample


@dataclass
class FlowOptions:
    T: int = 1000
    prediction: Literal["v", "x0"] = "v"
    timesteps: Literal["uniform", "logit-normal"] = "logit-normal"
    logit_mean: float = 0.0
    logit_std: float = 1.0

    def __post_init__(self):
        if not 1 <= self.T <= 100_000:
            raise ValueError(f"T must be between 1 and 100000, got {self.T}")
        if self.logit_std <= 0:
            raise ValueError(f"logit_std must be positive, got {self.logit_std}")


class FlowMatching(Degradation):
    Options = FlowOptions
    description = "flow matching / rectified flow: x_t = (1 − t/T)·x0 + (t/T)·ε, velocity target"
    default_sampler = "euler"

    def signal_std(self, t):
        return 1 - t.float() / self.T

    def noise_std(self, t):
        return t.float() / self.T

    def degrade_mean(self, x0, t, params=None):
        return per_sample(self.signal_std(t), x0) * x0

    def sample_timesteps(self, n, generator=None):
        if self.options.timesteps == "uniform":
            return super().sample_timesteps(n, generator)
        z = draws.randn((n,), generator) * self.options.logit_std + self.options.logit_mean
        return (torch.sigmoid(z) * self.T).round().long().clamp(1, self.T)

    def training_losses(self, network, x0, t, noise, params=None):
        """‖target − network(x_t, t)‖² per image, target v = ε − x0 or x0."""
        x_t = self.degrade(x0, t, noise=noise)
        target = noise - x0 if self.options.prediction == "v" else x0
        return (network(x_t, t) - target).pow(2).flatten(1).mean(1)

    def predict_x0(self, network, x_t, t):
        out = network(x_t, t)
        if self.options.prediction == "x0":
            return out
        return x_t - per_sample(self.noise_std(t), x_t) * out

    def sample_prior(self, n, shape, generator=None):
        return draws.randn((n, *shape), generator)
