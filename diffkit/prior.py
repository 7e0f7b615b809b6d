"""A Gaussian-mixture prior over low-dimensional features of fully degraded images.

Cold degradations keep a little of the image at t = T (its mean after blur, a few pixels after
pixelation); unconditional sampling draws that remainder from a mixture fitted on training images
(scikit-learn's GaussianMixture, as in the cold-diffusion code), never from real images.
"""

import warnings

import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture

from diffkit import draws


def fit_mixture(features, components, generator=None):
    """Fit on features (N, D); returns the mixture as tensors (weights, means, Cholesky factors)."""
    seed = int(draws.randint(0, 2**31 - 1, (1,), generator))
    data = features.detach().double().cpu().numpy()
    with warnings.catch_warnings():  # a fully masked x_T has one distinct value: fewer clusters is expected
        warnings.simplefilter("ignore", ConvergenceWarning)
        gmm = GaussianMixture(min(components, len(data)), covariance_type="full", reg_covar=1e-6,
                              random_state=seed).fit(data)
    return {"weights": torch.tensor(gmm.weights_, device="cpu"), "means": torch.tensor(gmm.means_, device="cpu"),
            "chol": torch.linalg.cholesky(torch.tensor(gmm.covariances_, device="cpu"))}


def sample_mixture(state, n, generator=None):
    """n draws (n, D) from a mixture returned by fit_mixture, on the generator's device (the CPU by default)."""
    device = generator.device if generator is not None else torch.device("cpu")
    state = {key: value.to(device) for key, value in state.items()}
    k = torch.multinomial(state["weights"].float(), n, replacement=True, generator=generator)
    z = torch.randn(n, state["means"].shape[1], 1, generator=generator, dtype=torch.float64, device=device)
    return (state["means"][k] + (state["chol"][k] @ z)[..., 0]).float()
