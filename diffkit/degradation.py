"""The Degradation contract: D(x0, t) destroys an image in T steps; t = 0 is the identity.

D(x0, t) = degrade_mean(x0, t) + noise_std(t)·ε. A deterministic (cold) degradation implements only
`degrade_mean`; the Gaussian DDPM is the case degrade_mean = sqrt(ᾱ_t)·x0, noise_std = sqrt(1 − ᾱ_t).
Writing both in one form lets the cold samplers run on every degradation, Gaussian included.

The defaults suit cold degradations: the network predicts x0 and trains with an L1 loss, as in
Bansal et al. 2022. The Gaussian DDPM overrides the target, the loss and the prior.

Devices: every method works on the device of its input tensors. Tables made at construction live on
the CPU and are moved where they are used (`lookup`); random draws come through `diffkit.draws`.
"""

import inspect
from dataclasses import dataclass

import torch

from diffkit import draws


@dataclass
class NoOptions:
    """For components without options."""


def per_sample(values, x):
    """A (B,) tensor shaped to broadcast against the batch x (B, C, H, W), on x's device and dtype."""
    return values.to(device=x.device, dtype=x.dtype).view(-1, *([1] * (x.dim() - 1)))


def steps_for(x, t):
    """The integer step t for every image of the batch x (B,), on x's device: what samplers pass at a jump."""
    return torch.full((len(x),), t, dtype=torch.long, device=x.device)


def takes_labels(method):
    """Whether a degradation's fit_prior or sample_prior accepts `labels` (a class-conditional prior)."""
    return "labels" in inspect.signature(method).parameters


def labels_for(method, labels):
    """The keyword arguments that hand `labels` to fit_prior or sample_prior: {} when there are none, or when the
    method (an older plugin's, a Gaussian prior) takes no labels."""
    return {"labels": labels} if labels is not None and takes_labels(method) else {}


def lookup(table, t):
    """table[t] for integer steps t (B,), on t's device (float32 there if the table is float64 and the
    device has no float64, as on MPS)."""
    values = table[t.cpu()]
    if t.device.type == "mps" and values.dtype == torch.float64:
        values = values.float()
    return values.to(t.device)


class Degradation:
    Options = NoOptions
    description = ""
    default_sampler = "cold"
    default_sampler_options = {}  # options of the default sampler when a config names no sampler
    x0_loss = "l1"  # the default training loss on x̂0: "l1" (Cold Diffusion's, learns the median) or "l2" (the mean)

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
        return torch.zeros(t.shape, device=t.device)

    def signal_std(self, t):
        """a_t (B,) when D(x0, t) = a_t·x0 + b_t·ε with b_t = noise_std(t) (Gaussian diffusion, flow matching);
        None for any other degradation. The ODE solvers (euler, heun, dpm++2m) run where it is declared."""
        return None

    def draw_params(self, n, generator=None):
        """Per-image random parameters of the degradation (e.g. a hole's centre) as a batch-first tensor
        (or dict of them) on the generator's device, or None."""
        return None

    def degrade(self, x0, t, generator=None, noise=None, params=None):
        """D(x0, t), drawing the noise from `generator` unless it is given."""
        mean, std = self.degrade_mean(x0, t, params), self.noise_std(t)
        if noise is None:
            if not (std > 0).any():
                return mean
            noise = draws.randn(x0.shape, generator, x0.device)
        return mean + per_sample(std, x0) * noise

    def noise_estimate(self, x_t, x0, t, params=None):
        """The ε that makes D(x0, t; ε) = x_t (zero where D adds no noise)."""
        std = per_sample(self.noise_std(t), x_t)
        return torch.where(std > 0, (x_t - self.degrade_mean(x0, t, params)) / std.clamp(min=1e-12), 0.0)

    def sample_timesteps(self, n, generator=None):
        """t ~ U{1..T} on the generator's device: t = T is drawn too, t = 0 (identity) is not."""
        return draws.randint(1, self.T + 1, (n,), generator)

    def training_losses(self, network, x0, t, noise, params=None):
        """Per-image training losses (B,) for a batch x0 at steps t with standard normal `noise` of x0's
        shape. The trainer draws t, noise and params for the whole global batch from the step's
        generator and hands each process its slice, so these must not draw anything themselves.

        Default: the mean absolute (x0_loss "l1") or squared ("l2") error of the network's x0 estimate from
        x_t = D(x0, t; noise). With noise in D, sampling needs x̂0 to be the mean: use "l2"."""
        x_t = self.degrade(x0, t, noise=noise, params=params)
        error = self.predict_x0(network, x_t, t) - x0
        return (error.abs() if self.x0_loss == "l1" else error.square()).flatten(1).mean(1)

    def predict_x0(self, network, x_t, t):
        """x̂0 = R(x_t, t), from whatever the network predicts."""
        return network(x_t, t)

    # Sampling starts from the prior: the distribution of fully degraded images. A degradation whose x_T keeps
    # something of the digit may also take `labels` in both methods (a conditional run passes them; see
    # `takes_labels`): then it can fit a prior per class, and draw each image from its class's.
    def fit_prior(self, images, generator=None):
        """Fit the prior on CPU training images in model range [-1, 1]; state goes into `prior_state`."""

    def sample_prior(self, n, shape, generator=None):
        """n draws of x_T of the given (C, H, W) shape, on the generator's device."""
        raise NotImplementedError

    def prior_state(self):
        """Fitted prior as {name: tensor}, saved with the checkpoint."""
        return {}

    def load_prior_state(self, state):
        """Restore what `prior_state` returned."""
