"""Unconditional sampling: prior draws x_T -> sampler -> uint8 images with their provenance.

x_T always comes from the degradation's fitted prior, never from degraded real images.
"""

import json

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from diffkit.atomic import atomic_path
from diffkit.data import to_uint8
from diffkit.errors import DiffkitError


def generate(model, n, sampler=None, sampler_options=None, steps=None, seed=0, batch_size=256,
             trajectory_count=0, console=None):
    """Sample n images. Returns (uint8 tensor (n, C, H, W), trajectory list or None, metadata dict)."""
    if n < 1:
        raise DiffkitError(f"-n must be a positive integer, got {n}")
    component, sampler_obj = model.sampler(sampler, sampler_options)
    degradation, network = model.degradation, model.network
    if steps is None:  # the run's own sampling steps go with the run's own sampler
        own = sampler in (None, model.config.sampler) and model.config.sample_steps
        steps = own or sampler_obj.default_steps(degradation)
    if not 1 <= steps <= degradation.T:
        raise DiffkitError(f"--steps must be between 1 and T={degradation.T}, got {steps}")
    shape = (network.channels, network.image_size, network.image_size)
    batches = [min(batch_size, n - i) for i in range(0, n, batch_size)]
    out, trajectory = [], None
    columns = (TextColumn(f"[bold]sample[/] {component.name}×{steps}"), BarColumn(), MofNCompleteColumn(),
               TimeRemainingColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("sample", total=len(batches) * sampler_obj.nfe(degradation, steps))
        for index, size in enumerate(batches):
            generator = torch.Generator().manual_seed(seed * 1_000_003 + index)
            x_T = degradation.sample_prior(size, shape, generator)
            want_path = index == 0 and trajectory_count > 0
            result = sampler_obj.sample(network, degradation, x_T, steps, generator, trajectory=want_path,
                                        on_step=lambda: progress.advance(task))
            if want_path:
                result, path = result
                trajectory = [to_uint8(x[:trajectory_count]) for x in path]
            out.append(to_uint8(result))
    meta = {
        "n": n, "seed": seed, "batch_size": batch_size,
        "sampler": component.name, "sampler_options": sampler_obj.options.__dict__,
        "steps": steps, "nfe": sampler_obj.nfe(degradation, steps),
        "training_step": model.step, "config": model.config.to_dict(),
        "versions": model.versions(component),
    }
    return torch.cat(out), trajectory, meta


def save_samples(path, images, meta):
    """npz with `images` uint8 (N, H, W) for 1 channel or (N, H, W, C), and `meta` as a JSON string."""
    array = images.numpy()
    array = array[:, 0] if array.shape[1] == 1 else array.transpose(0, 2, 3, 1)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, images=array, meta=np.array(json.dumps(meta)))
