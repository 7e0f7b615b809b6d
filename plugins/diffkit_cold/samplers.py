"""Cold-diffusion samplers (Bansal et al. 2022); each works with every degradation.

With x̂0 = R(x_t, t) and D(x̂0, s; ε̂) reusing the noise ε̂ implied by x_t (zero for cold degradations):
- `cold` (Algorithm 2, TACoS): x_s = x_t − D(x̂0, t) + D(x̂0, s). For Gaussian noise this is DDIM.
- `cold-naive` (Algorithm 1): x_s = D(x̂0, s), with fresh noise where D adds any.
- `cold-heun`: Algorithm 2's jump as an Euler step of the probability-flow ODE, corrected with Heun's
  trapezoid rule: the jump's increment D(x̂0, s) − D(x̂0, t) is averaged between the estimates at both ends of
  the jump (Karras et al. 2022's second-order step, for any degradation). Two network evaluations a jump, one
  on the last (into t = 0, where the network was never trained).
- `direct`: x̂0 = R(x_T, T) in one step, the paper's "direct" baseline.

`delta` > 0 makes `cold`, `cold-naive` and `cold-heun` stochastic: fresh Gaussian noise of std δ is added after
every step but the last, as in inverse heat dissipation (Rissanen et al. 2023, δ ≈ 0.01–0.02 on MNIST). A
deterministic sampler maps each prior draw to one image; the noise lets nearby prior draws end on different digits.
"""

from dataclasses import dataclass

from diffkit import draws
from diffkit.degradation import steps_for
from diffkit.sampler import Sampler


@dataclass
class StochasticOptions:
    delta: float = 0.0  # std of the fresh noise added after every step but the last (0: deterministic)

    def __post_init__(self):
        if not 0 <= self.delta <= 1:
            raise ValueError(f"delta must be in [0, 1], got {self.delta}")


class StochasticCold(Sampler):
    """A cold sampler whose `jump` may be followed by fresh noise of std δ."""

    Options = StochasticOptions

    def step(self, denoiser, x, t, s, state, generator=None, params=None):
        x = self.jump(denoiser, x, t, s, generator, params)
        if s > 0 and self.options.delta > 0:
            x = x + self.options.delta * draws.randn(x.shape, generator, x.device)
        return x


def _increment(denoiser, x, at, t, s, params=None):
    """Algorithm 2's jump from t to s, D(x̂0, s; ε̂) − D(x̂0, t; ε̂), with x̂0 and ε̂ estimated from x at `at`."""
    degradation, x0 = denoiser.degradation, denoiser(x, at)
    eps = degradation.noise_estimate(x, x0, steps_for(x, at), params)
    tt, ss = steps_for(x, t), steps_for(x, s)
    return degradation.degrade(x0, ss, noise=eps, params=params) - degradation.degrade(x0, tt, noise=eps, params=params)


class ColdSampler(StochasticCold):
    description = "cold diffusion Algorithm 2 (TACoS): x_s = x_t − D(x̂0, t) + D(x̂0, s), + δ·ε if delta > 0"

    def jump(self, denoiser, x, t, s, generator=None, params=None):
        return x + _increment(denoiser, x, t, t, s, params)


class HeunColdSampler(StochasticCold):
    description = "Algorithm 2 with Heun's second-order correction (2 NFE a step, Euler into t = 0), + δ·ε if delta"

    def nfe(self, degradation, steps):
        return 2 * steps - 1

    def jump(self, denoiser, x, t, s, generator=None, params=None):
        euler = _increment(denoiser, x, t, t, s, params)
        if s == 0:
            return x + euler
        return x + (euler + _increment(denoiser, x + euler, s, t, s, params)) / 2


class NaiveColdSampler(StochasticCold):
    description = "cold diffusion Algorithm 1: x_s = D(x̂0, s), + δ·ε if delta > 0"

    def jump(self, denoiser, x, t, s, generator=None, params=None):
        return denoiser.degradation.degrade(denoiser(x, t), steps_for(x, s), generator, params=params)


class DirectSampler(Sampler):
    description = "one-step restoration x̂0 = R(x_T, T) (the paper's 'direct' baseline)"
    fixed_steps = 1

    def step(self, denoiser, x, t, s, state, generator=None, params=None):
        return denoiser(x, t)
