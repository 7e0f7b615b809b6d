"""What every cold degradation shares: optional noise, and a mixture prior over what survives at T."""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from diffkit import draws
from diffkit.degradation import Degradation
from diffkit.prior import fit_mixture, sample_mixture

PRIOR_FIT_IMAGES = 10_000


@dataclass
class ColdOptions:
    T: int = 20
    noise: float = 0.0  # std of added Gaussian noise at t = T, growing linearly from 0 (Rissanen et al.)
    prior_resolution: int = 1  # the prior models x_T pooled to r×r per channel
    prior_components: int = 10  # Gaussian-mixture components
    prior_noise: float = 0.0  # std of extra noise added to prior draws, to break symmetry

    def __post_init__(self):
        if not 1 <= self.T <= 1000:
            raise ValueError(f"T must be between 1 and 1000, got {self.T}")
        if self.noise < 0 or self.prior_noise < 0:
            raise ValueError("noise and prior_noise must be >= 0")
        if not 1 <= self.prior_resolution <= 28 or not 1 <= self.prior_components <= 1000:
            raise ValueError("prior_resolution must be in 1..28 and prior_components in 1..1000")


class ColdDegradation(Degradation):
    Options = ColdOptions
    prior_upsample = "bilinear"  # how a mixture draw of r×r values becomes an image

    def __init__(self, options=None):
        super().__init__(options)
        self.prior = None

    def noise_std(self, t):
        return self.options.noise * t.float() / self.T

    def _at_T(self, x):
        return self.degrade_mean(x, torch.full((len(x),), self.T, dtype=torch.long, device=x.device))

    def fit_prior(self, images, generator=None):
        """Mixture over the r×r pooled fully degraded training images."""
        subset = images[:PRIOR_FIT_IMAGES]
        x_T = torch.cat([self._at_T(chunk) for chunk in subset.split(1000)])
        features = F.adaptive_avg_pool2d(x_T, self.options.prior_resolution).flatten(1)
        self.prior = fit_mixture(features, self.options.prior_components, generator)

    def prior_image(self, pooled, size):
        """An x_T whose r×r pooling is `pooled`: upsampled, then degraded to T (a mask's hole, say)."""
        mode = "nearest" if pooled.shape[-1] == 1 else self.prior_upsample  # bit-exact constants
        return self._at_T(F.interpolate(pooled, size=size, mode=mode).clamp(-1, 1))

    def sample_prior(self, n, shape, generator=None):
        """Mixture draw -> x_T image -> + noise: D's own noise at T (what training showed the network)
        and the symmetry-breaking `prior_noise`, as independent Gaussians."""
        if self.prior is None:
            raise RuntimeError("fit_prior must run before sample_prior")
        r = self.options.prior_resolution
        x = self.prior_image(sample_mixture(self.prior, n, generator).view(n, shape[0], r, r), shape[1:])
        std = math.sqrt(self.options.noise**2 + self.options.prior_noise**2)  # noise_std(T) = noise
        return x + std * draws.randn(x.shape, generator, x.device)

    def prior_state(self):
        return dict(self.prior) if self.prior else {}

    def load_prior_state(self, state):
        self.prior = dict(state) or None
