"""Example third-party plugin: the `rowcol` degradation.

Step t replaces t rows (or columns), taken in a fixed random order, by their own mean, so at t = T
the image is a set of stripes. The prior is a Gaussian mixture over those stripe values, fitted on
the training images, so unconditional samples start from new stripe patterns, not real ones.
A degradation needs only `degrade_mean` and a prior; diffkit's cold samplers do the rest.

The plugin also brings a sampler, `cold-2m`, to show the sampler contract: it asks the denoiser (never the
network) for x̂0, so class labels and guidance reach it too, and it keeps the last estimate in the state that
`begin` makes for each sampling call.

The stripes say where a digit's ink is row by row, not where in the row: a deterministic sampler draws
one digit per stripe pattern, and the samples lack variety (docs/benchmarks.md measures it). Noise
growing to std 1 at T lets the cold sampler draw that variety, as DDIM does; the network then learns
x0 with a squared error, whose optimum is the mean digit the sampler needs (an L1 loss learns the median,
a thin stroke, and the samples crowd onto 1s). `noise = 0` is the deterministic degradation.
"""

from dataclasses import dataclass, field
from typing import Literal

import torch

from diffkit import draws, hookimpl
from diffkit.degradation import Degradation, steps_for
from diffkit.prior import fit_mixture, sample_mixture
from diffkit.sampler import Sampler

__version__ = "0.3.0"


@dataclass
class RowColOptions:
    axis: Literal["rows", "columns"] = field(default="rows", metadata={"help": "average rows or columns"})
    size: int = field(default=28, metadata={"help": "image height (rows) or width (columns); T equals it"})
    order_seed: int = field(default=0, metadata={"help": "seed of the order in which lines are averaged"})
    components: int = field(default=100, metadata={"help": "Gaussian-mixture components of the prior"})
    noise: float = field(default=1.0, metadata={"help": "std of the Gaussian noise at T, growing linearly from 0"})
    prior_noise: float = field(default=0.0, metadata={"help": "extra noise added to prior draws"})

    def __post_init__(self):
        if not 1 <= self.size <= 1024 or not 1 <= self.components <= 1000 or min(self.noise, self.prior_noise) < 0:
            raise ValueError("size must be in 1..1024, components in 1..1000, noise and prior_noise >= 0")


class RowColAverage(Degradation):
    Options = RowColOptions
    description = "average rows (or columns) one at a time in a fixed random order (example plugin)"
    x0_loss = "l2"  # squared error on x̂0, since D adds noise

    def __init__(self, options=None):
        super().__init__(options)
        order = torch.randperm(self.options.size, generator=torch.Generator().manual_seed(self.options.order_seed), device="cpu")
        self.rank = torch.empty_like(order)  # a CPU table: the step at which each line is averaged
        self.rank[order] = torch.arange(1, self.options.size + 1, device="cpu")
        self.prior = None

    @property
    def T(self):
        return self.options.size

    def _line_dim(self):
        return -1 if self.options.axis == "rows" else -2  # a row's mean is taken over its columns

    def degrade_mean(self, x0, t, params=None):
        means = x0.mean(dim=self._line_dim(), keepdim=True).expand_as(x0)
        done = self.rank.to(t.device)[None, :] <= t[:, None]  # (B, lines), on the input's device
        mask = done[:, None, :, None] if self.options.axis == "rows" else done[:, None, None, :]
        return torch.where(mask, means, x0)

    def noise_std(self, t):
        return self.options.noise * t.float() / self.T

    def fit_prior(self, images, generator=None):
        self.prior = fit_mixture(images.mean(dim=self._line_dim()).flatten(1), self.options.components, generator)

    def sample_prior(self, n, shape, generator=None):
        c, h, w = shape
        lines = sample_mixture(self.prior, n, generator).clamp(-1, 1)
        x = lines.view(n, c, h, 1) if self.options.axis == "rows" else lines.view(n, c, 1, w)
        x = x.expand(n, c, h, w)
        std = (self.options.noise**2 + self.options.prior_noise**2) ** 0.5  # D's own noise at T, and the extra
        return x + std * draws.randn(x.shape, generator, x.device)

    def prior_state(self):
        return dict(self.prior) if self.prior else {}

    def load_prior_state(self, state):
        self.prior = dict(state) or None


class TwoStepCold(Sampler):
    """Cold diffusion's Algorithm 2, x_s = x_t − D(x̂0, t) + D(x̂0, s), with x̂0 extrapolated from the last two
    estimates as DPM-Solver++(2M) does: 1.5·x̂0_k − 0.5·x̂0_{k−1} (even steps), the first and last steps plain."""

    description = "cold Algorithm 2 with x̂0 extrapolated from the last two estimates (example plugin)"

    def begin(self, degradation, timesteps):
        return {"previous": None}

    def step(self, denoiser, x, t, s, state, generator=None, params=None):
        d, x0 = denoiser.degradation, denoiser(x, t)
        tt = steps_for(x, t)
        estimate = x0 if state["previous"] is None or s == 0 else (1.5 * x0 - 0.5 * state["previous"]).clamp(-1, 1)
        state["previous"] = x0
        eps = d.noise_estimate(x, estimate, tt, params)
        return x - d.degrade(estimate, tt, noise=eps, params=params) + d.degrade(estimate, steps_for(x, s), noise=eps,
                                                                                params=params)


@hookimpl
def register_degradations(register):
    register(RowColAverage, name="rowcol")


@hookimpl
def register_samplers(register):
    register(TwoStepCold, name="cold-2m")
