"""Cold-diffusion samplers (Bansal et al. 2022); each works with every degradation.

With x̂0 = R(x_t, t) and D(x̂0, s; ε̂) reusing the noise ε̂ implied by x_t (zero for cold degradations):
- `cold` (Algorithm 2, TACoS): x_s = x_t − D(x̂0, t) + D(x̂0, s). For Gaussian noise this is DDIM.
- `cold-naive` (Algorithm 1): x_s = D(x̂0, s), with fresh noise where D adds any.
- `direct`: x̂0 = R(x_T, T) in one step, the paper's "direct" baseline.
"""

import torch

from diffkit.sampler import Sampler


def _estimate(network, degradation, x, t):
    tt = torch.full((len(x),), t, dtype=torch.long, device=x.device)
    return tt, degradation.predict_x0(network, x, tt).clamp(-1, 1)


class ColdSampler(Sampler):
    description = "cold diffusion Algorithm 2 (TACoS): x_s = x_t − D(x̂0, t) + D(x̂0, s)"

    def step(self, network, degradation, x, t, s, generator=None, params=None):
        tt, x0 = _estimate(network, degradation, x, t)
        ss = torch.full_like(tt, s)
        eps = degradation.noise_estimate(x, x0, tt, params)
        return x - degradation.degrade(x0, tt, noise=eps, params=params) + degradation.degrade(x0, ss, noise=eps, params=params)


class NaiveColdSampler(Sampler):
    description = "cold diffusion Algorithm 1: x_s = D(x̂0, s)"

    def step(self, network, degradation, x, t, s, generator=None, params=None):
        tt, x0 = _estimate(network, degradation, x, t)
        return degradation.degrade(x0, torch.full_like(tt, s), generator, params=params)


class DirectSampler(Sampler):
    description = "one-step restoration x̂0 = R(x_T, T) (the paper's 'direct' baseline)"
    fixed_steps = 1

    def step(self, network, degradation, x, t, s, generator=None, params=None):
        return _estimate(network, degradation, x, t)[1]
