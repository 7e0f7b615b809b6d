"""Samplers for Gaussian diffusion: DDPM ancestral (Ho et al. Alg. 2) and DDIM (Song et al. 2021).

Both clip the x0 estimate to [-1, 1] at every step, as improved-diffusion does; with fewer steps
than T they jump between evenly spaced timesteps (improved-diffusion's respacing).
"""

from dataclasses import dataclass

from diffkit import draws
from diffkit.degradation import steps_for
from diffkit.sampler import Sampler
from diffkit_gaussian.diffusion import GaussianDiffusion


class DDPMSampler(Sampler):
    description = "DDPM ancestral sampling (Ho et al. Alg. 2) with posterior variance; T steps by default"

    def supports(self, degradation):
        return isinstance(degradation, GaussianDiffusion)

    def p_sample(self, denoiser, x, t, s, state=None, generator=None, params=None):
        """One ancestral step x_t -> x_s."""
        diffusion, x0 = denoiser.degradation, denoiser(x, t)
        mean, variance = diffusion.q_posterior_mean_variance(x0, x, steps_for(x, t), steps_for(x, s))
        if s == 0:
            return mean
        return mean + variance.sqrt() * draws.randn(x.shape, generator, x.device)

    step = p_sample


@dataclass
class DDIMOptions:
    eta: float = 0.0

    def __post_init__(self):
        if self.eta < 0:
            raise ValueError(f"eta must be >= 0, got {self.eta}")


class DDIMSampler(Sampler):
    Options = DDIMOptions
    description = "DDIM (Song et al. 2021): eta = 0 deterministic, eta = 1 ancestral; 50 steps by default"

    def supports(self, degradation):
        return isinstance(degradation, GaussianDiffusion)

    def default_steps(self, degradation):
        return min(50, degradation.T)

    def ddim_sample(self, denoiser, x, t, s, state=None, generator=None, params=None):
        """One DDIM step x_t -> x_s."""
        diffusion, x0 = denoiser.degradation, denoiser(x, t)
        eps = diffusion.noise_estimate(x, x0, steps_for(x, t))
        a_t, a_s = diffusion.alphas_cumprod[t], diffusion.alphas_cumprod[s]
        sigma = self.options.eta * ((1 - a_s) / (1 - a_t) * (1 - a_t / a_s)).sqrt()
        x = a_s.sqrt().float() * x0 + (1 - a_s - sigma**2).clamp(min=0).sqrt().float() * eps
        if s > 0 and sigma > 0:
            x = x + sigma.float() * draws.randn(x.shape, generator, x.device)
        return x

    step = ddim_sample
