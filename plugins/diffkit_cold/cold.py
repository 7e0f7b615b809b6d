"""What every cold degradation shares: optional noise, and a mixture prior over what survives at T."""

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F

from diffkit import draws
from diffkit.degradation import Degradation
from diffkit.prior import fit_mixture, sample_mixture

PRIOR_FIT_IMAGES = 10_000


def option(default, text):
    """A dataclass field whose help `diffkit list` shows."""
    return field(default=default, metadata={"help": text})


@dataclass
class ColdOptions:
    T: int = option(20, "degradation steps")
    noise: float = option(0.0, "std of the Gaussian noise D adds at T, growing linearly from 0")
    prior_resolution: int = option(1, "the prior models x_T pooled to r×r (or its top r² principal components)")
    prior_features: Literal["pool", "pca"] = option("pool", "what the prior's mixture is fitted to")
    prior_components: int = option(10, "Gaussian-mixture components of the prior")
    prior_noise: float = option(0.0, "std of extra noise on prior draws")
    loss: Literal["l1", "l2"] = option("l1", "x̂0 loss: l1 (the paper's) learns the median, l2 the mean, "
                                             "which sampling needs when D adds noise")

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
        self.prior, self.class_priors = None, {}  # class_priors: {class: mixture} of a conditional run

    def noise_std(self, t):
        return self.options.noise * t.float() / self.T

    @property
    def x0_loss(self):
        """The `loss` option: with noise in D, an L1-trained x̂0 is the median digit (a thin stroke, a "1") where
        x_t is noisiest, and the samples crowd onto 1s and 7s."""
        return self.options.loss

    def _at_T(self, x):
        return self.degrade_mean(x, torch.full((len(x),), self.T, dtype=torch.long, device=x.device))

    def fit_prior(self, images, generator=None, labels=None):
        """Mixture over the fully degraded training images, pooled to r×r or projected on their top r²
        principal components. PCA keeps what a blurred x_T holds between the pooling cells, so its draws look
        like real x_T; for a pixelation it spans the same block images as pooling does.

        With labels (a conditional run), also one mixture per class over the same features: x_T keeps a coarse
        shape that decides the digit, so a label can steer the samples only if x_T is drawn from its class."""
        subset = images[:PRIOR_FIT_IMAGES]
        x_T = torch.cat([self._at_T(chunk) for chunk in subset.split(1000)])
        r, components = self.options.prior_resolution, self.options.prior_components
        if self.options.prior_features == "pool":
            features, extra = F.adaptive_avg_pool2d(x_T, r).flatten(1), {}
        else:
            flat = x_T.flatten(1).double()
            mean = flat.mean(dim=0)
            basis = torch.linalg.svd(flat - mean, full_matrices=False).Vh[: r * r]  # (r², C·H·W)
            features, extra = (flat - mean) @ basis.T, {"pca_mean": mean.float(), "pca_basis": basis.float()}
        self.prior = {**fit_mixture(features, components, generator), **extra}
        self.class_priors = {}
        if labels is not None:
            kept = labels[: len(subset)]
            self.class_priors = {c: fit_mixture(features[kept == c], components, generator)
                                 for c in kept.unique().tolist()}

    def prior_image(self, pooled, size):
        """An x_T whose r×r pooling is `pooled`: upsampled, then degraded to T (a mask's hole, say)."""
        mode = "nearest" if pooled.shape[-1] == 1 else self.prior_upsample  # bit-exact constants
        return self._at_T(F.interpolate(pooled, size=size, mode=mode).clamp(-1, 1))

    def sample_prior(self, n, shape, generator=None, labels=None):
        """Mixture draw -> x_T image -> + noise: D's own noise at T (what training showed the network)
        and the symmetry-breaking `prior_noise`, as independent Gaussians. With labels, image i is drawn from
        the mixture of class labels[i] (the null label, or a class without one: the mixture of all)."""
        if self.prior is None:
            raise RuntimeError("fit_prior must run before sample_prior")
        r, draw = self.options.prior_resolution, self._draw(n, generator, labels)
        if "pca_basis" in self.prior:
            basis, mean = self.prior["pca_basis"].to(draw.device), self.prior["pca_mean"].to(draw.device)
            x = (draw @ basis + mean).view(n, *shape).clamp(-1, 1)
        else:
            x = self.prior_image(draw.view(n, shape[0], r, r), shape[1:])
        std = math.sqrt(self.options.noise**2 + self.options.prior_noise**2)  # noise_std(T) = noise
        return x + std * draws.randn(x.shape, generator, x.device)

    def _draw(self, n, generator, labels):
        if labels is None or not self.class_priors:
            return sample_mixture(self.prior, n, generator)
        draw = None
        for c in labels.unique().tolist():
            rows = (labels == c).nonzero()[:, 0]
            part = sample_mixture(self.class_priors.get(c, self.prior), len(rows), generator)
            draw = part.new_empty((n, part.shape[1])) if draw is None else draw
            draw[rows.to(draw.device)] = part
        return draw

    def prior_state(self):
        classes = {f"class{c}.{k}": v for c, mixture in self.class_priors.items() for k, v in mixture.items()}
        return {**self.prior, **classes} if self.prior else {}

    def load_prior_state(self, state):
        prior = {k: v for k, v in state.items() if not k.startswith("class")}
        missing = sorted({"weights", "means", "chol"} - set(prior))
        if missing:
            raise KeyError(f"prior tensors missing: {', '.join(missing)}")
        self.prior, self.class_priors = prior, {}
        for key, value in state.items():
            if key.startswith("class"):
                c, _, name = key.removeprefix("class").partition(".")
                self.class_priors.setdefault(int(c), {})[name] = value
