"""The Degradation contract: D(x0, t) destroys an image in T steps; t = 0 is the identity.

A subclass provides `T` and `degrade`. The defaults here suit deterministic (cold) degradations:
the network predicts x0 and trains with an L1 loss, as in Bansal et al. 2022. The Gaussian DDPM
overrides the target, the loss and the prior.
"""

from dataclasses import dataclass

import torch


@dataclass
class NoOptions:
    """For components without options."""


class Degradation:
    Options = NoOptions
    description = ""

    def __init__(self, options=None):
        self.options = options if options is not None else self.Options()

    @property
    def T(self):
        """Number of degradation steps; t runs over 0..T."""
        return self.options.T

    def degrade(self, x0, t, generator=None):
        """D(x0, t) for a batch x0 (B, C, H, W) and per-sample integer steps t (B,)."""
        raise NotImplementedError

    def sample_timesteps(self, n, generator=None):
        """t ~ U{1..T}: t = T is drawn too, t = 0 (identity) is not."""
        return torch.randint(1, self.T + 1, (n,), generator=generator)

    def loss(self, network, x0, generator=None):
        """Training loss for one batch: L1 between x0 and the network's x0 estimate."""
        t = self.sample_timesteps(x0.shape[0], generator)
        x_t = self.degrade(x0, t, generator)
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
