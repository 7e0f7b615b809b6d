"""The Sampler contract: walk from prior draws x_T back to images x_0 in [-1, 1].

A sampler never calls the network: it asks a `diffkit.denoiser.Denoiser` for x̂0, so class labels and
guidance reach every sampler alike. `begin` makes the per-call state that `step` carries along (a multistep
solver's last estimates), so every sampler runs in the one loop of `sample`."""

import torch

from diffkit.degradation import NoOptions


class Sampler:
    Options = NoOptions
    description = ""
    fixed_steps = None  # a sampler that always takes this many steps, whatever is asked (e.g. 1)

    def __init__(self, options=None):
        self.options = options if options is not None else self.Options()

    def supports(self, degradation):
        """Whether this sampler can run with `degradation` (checked before sampling)."""
        return True

    def default_steps(self, degradation):
        return self.fixed_steps or degradation.T

    def nfe(self, degradation, steps):
        """Denoiser calls per sample (a guided call runs the network twice: `Denoiser.evaluations`)."""
        return steps

    def timesteps(self, degradation, steps):
        """The integer timesteps [T, ..., 0] visited in `steps` jumps; evenly spaced unless a sampler spaces
        them otherwise (in log-SNR, say)."""
        return even_timesteps(degradation.T, steps)

    def begin(self, degradation, timesteps):
        """The state one `sample` call carries from step to step (a multistep solver's history), given the
        timesteps it will visit; an empty dict by default."""
        return {}

    def step(self, denoiser, x, t, s, state, generator=None, params=None):
        """One reverse jump x_t -> x_s (s < t). `denoiser(x, t)` is x̂0 and `denoiser.degradation` the
        degradation; state is what `begin` returned; params are the degradation's per-image parameters."""
        raise NotImplementedError

    @torch.no_grad()
    def sample(self, denoiser, x_T, steps, generator=None, trajectory=0, on_step=None, params=None):
        """Return x_0 for the batch x_T; with trajectory=K > 0, (x_0, path): the reverse path [x_T, ..., x_0]
        of the batch's first K images.

        on_step(), if given, is called after every jump (for progress bars)."""
        x, path = x_T, [x_T[:trajectory]]
        grid = self.timesteps(denoiser.degradation, self.fixed_steps or steps)
        state = self.begin(denoiser.degradation, grid)
        for t, s in zip(grid[:-1], grid[1:]):
            x = self.step(denoiser, x, t, s, state, generator, params)
            if trajectory:
                path.append(x[:trajectory])
            if on_step:
                on_step()
        return (x, path) if trajectory else x


def even_timesteps(T, steps):
    """[T, ..., 0]: `steps` evenly spaced integer jumps down from T, each to a smaller t."""
    if not 1 <= steps <= T:
        raise ValueError(f"steps must be between 1 and T={T}, got {steps}")
    return torch.linspace(T, 0, steps + 1, device="cpu").round().long().tolist()


def timestep_pairs(T, steps):
    """[(t, s), ...] from T down to 0 in `steps` evenly spaced jumps, each s < t."""
    grid = even_timesteps(T, steps)
    return list(zip(grid[:-1], grid[1:]))
