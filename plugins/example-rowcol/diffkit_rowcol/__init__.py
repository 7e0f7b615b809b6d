"""Example third-party plugin: the `rowcol` degradation.

Step t replaces t rows (or columns), taken in a fixed random order, by their own mean, so at t = T
the image is a set of stripes. The prior is a Gaussian mixture over those stripe means, fitted on
the training images, so unconditional samples start from new stripe patterns, not real ones.
"""

from dataclasses import dataclass
from typing import Literal

import torch
from sklearn.mixture import GaussianMixture

from diffkit import hookimpl
from diffkit.degradation import Degradation

__version__ = "0.1.0"


@dataclass
class RowColOptions:
    axis: Literal["rows", "columns"] = "rows"
    size: int = 28  # image height (rows) or width (columns); T equals it
    order_seed: int = 0
    components: int = 10  # Gaussian mixture components of the prior

    def __post_init__(self):
        if self.size < 1 or self.components < 1:
            raise ValueError("size and components must be positive")


class RowColAverage(Degradation):
    Options = RowColOptions
    description = "average rows (or columns) one at a time in a fixed random order (example plugin)"

    def __init__(self, options=None):
        super().__init__(options)
        order = torch.randperm(self.options.size, generator=torch.Generator().manual_seed(self.options.order_seed))
        # rank[i] = the step at which line i is averaged (1..T)
        self.rank = torch.empty_like(order)
        self.rank[order] = torch.arange(1, self.options.size + 1)
        self.prior = None

    @property
    def T(self):
        return self.options.size

    def _dim(self):
        return -1 if self.options.axis == "rows" else -2  # average along a row = over columns

    def degrade(self, x0, t, generator=None):
        dim = self._dim()
        means = x0.mean(dim=dim, keepdim=True).expand_as(x0)
        done = self.rank[None, :] <= t[:, None]  # (B, lines)
        mask = done[:, None, :, None] if self.options.axis == "rows" else done[:, None, None, :]
        return torch.where(mask, means, x0)

    def fit_prior(self, images, generator=None):
        means = images.mean(dim=self._dim()).flatten(1).double().numpy()
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
        gmm = GaussianMixture(self.options.components, covariance_type="full", random_state=seed).fit(means)
        self.prior = {"weights": torch.tensor(gmm.weights_), "means": torch.tensor(gmm.means_),
                      "chol": torch.linalg.cholesky(torch.tensor(gmm.covariances_))}

    def sample_prior(self, n, shape, generator=None):
        p = self.prior
        k = torch.multinomial(p["weights"], n, replacement=True, generator=generator)
        z = torch.randn(n, p["means"].shape[1], 1, generator=generator, dtype=torch.float64)
        lines = (p["means"][k] + (p["chol"][k] @ z)[..., 0]).float().clamp(-1, 1)
        c, h, w = shape
        if self.options.axis == "rows":
            return lines.view(n, c, h, 1).expand(n, c, h, w).contiguous()
        return lines.view(n, c, 1, w).expand(n, c, h, w).contiguous()

    def prior_state(self):
        return dict(self.prior) if self.prior else {}

    def load_prior_state(self, state):
        self.prior = dict(state) or None


@hookimpl
def register_degradations(register):
    register(RowColAverage, name="rowcol")
