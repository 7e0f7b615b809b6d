"""The Degradation contract: D(x0, t) destroys an image in T steps; t = 0 is the identity.

D(x0, t) = degrade_mean(x0, t) + noise_std(t)·ε. A deterministic (cold) degradation implements only
`degrade_mean`; the Gaussian DDPM is the case degrade_mean = sqrt(ᾱ_t)·x0, noise_std = sqrt(1 − ᾱ_t).
Writing both in one form lets the cold samplers run on every degradation, Gaussian included.

The defaults suit cold degradations: the network predicts x0 and trains with an L1 loss, as in
Bansal et al. 2022. The Gaussian DDPM overrides the target, the loss and the prior.
"""

from dataclasses import dataclass

import torch


@dataclass
class NoOptions:
    """For components without options."""


def per_sample(values, x):
    """A (B,) tensor shaped to broadcast against the batch x (B, C, H, W)."""
    return values.to(x.dtype).view(-1, *([1] * (x.dim() - 1)))


class Degradation:
    Options = NoOptions
    description = ""
    default_sampler = "cold"

    def __init__(self, options=None):
        self.options = options if options is not None else self.Options()

    @property
    def T(self):
        """Number of degradation steps; t runs over 0..T."""
        return self.options.T

    def degrade_mean(self, x0, t, params=None):
        """The deterministic part of D(x0, t) for a batch x0 (B, C, H, W) and integer steps t (B,)."""
        raise NotImplementedError

    def noise_std(self, t):
        """Standard deviation (B,) of the Gaussian noise D adds at steps t; zero for cold degradations."""
        return torch.zeros(len(t))

    def draw_params(self, n, generator=None):
        """Per-image random parameters of the degradation (e.g. a hole's centre), or None."""
        return None

    def degrade(self, x0, t, generator=None, noise=None, params=None):
        """D(x0, t), drawing the noise from `generator` unless it is given."""
        mean, std = self.degrade_mean(x0, t, params), self.noise_std(t)
        if noise is None:
            if not (std > 0).any():
                return mean
            noise = torch.randn(x0.shape, generator=generator)
        return mean + per_sample(std, x0) * noise

    def noise_estimate(self, x_t, x0, t, params=None):
        """The ε that makes D(x0, t; ε) = x_t (zero where D adds no noise)."""
        std = per_sample(self.noise_std(t), x_t)
        return torch.where(std > 0, (x_t - self.degrade_mean(x0, t, params)) / std.clamp(min=1e-12), 0.0)

    def sample_timesteps(self, n, generator=None):
        """t ~ U{1..T}: t = T is drawn too, t = 0 (identity) is not."""
        return torch.randint(1, self.T + 1, (n,), generator=generator)

    def loss(self, network, x0, generator=None):
        """Training loss for one batch: L1 between x0 and the network's x0 estimate."""
        t = self.sample_timesteps(x0.shape[0], generator)
        x_t = self.degrade(x0, t, generator, params=self.draw_params(x0.shape[0], generator))
        return (self.predict_x0(network, x_t, t) - x0).abs().mean()

    def predict_x0(self, network, x_t, t):
        """x̂0 = R(x_t, t), from whatever the network predicts."""
        return network(x_t, t)

    # Unconditional sampling starts from the prior: the distribution of fully degraded images.
    def fit_prior(self, images, generator=None):
        """Fit the prior on training images in model range [-1, 1]; state goes into `prior_state`."""

    def sample_prior(self, n, shape, generator=None):
        """n draws of x_T of the given (C, H, W) shape."""
        raise NotImplementedError

    def prior_state(self):
        """Fitted prior as {name: tensor}, saved with the checkpoint."""
        return {}

    def load_prior_state(self, state):
        """Restore what `prior_state` returned."""
