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
            params = degradation.draw_params(size, generator)
            want_path = index == 0 and trajectory_count > 0
            result = sampler_obj.sample(network, degradation, x_T, steps, generator, trajectory=want_path,
                                        on_step=lambda: progress.advance(task), params=params)
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


def load_samples(path, image_size=28, channels=1):
    """(uint8 tensor (N, C, H, W), meta dict) from a samples .npz, with one-line errors for bad files."""
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DiffkitError(f"cannot read {path} as .npz: {exc}".splitlines()[0]) from None
    if "images" not in data.files:
        raise DiffkitError(f"{path} has no 'images' array (found: {', '.join(data.files) or 'nothing'})")
    images = data["images"]
    if images.ndim == 3:
        images = images[:, None]
    elif images.ndim == 4 and images.shape[-1] == channels and images.shape[1] != channels:
        images = images.transpose(0, 3, 1, 2)
    if images.ndim != 4 or images.shape[1:] != (channels, image_size, image_size):
        raise DiffkitError(f"{path}: images must be N×{image_size}×{image_size} (got shape {data['images'].shape})")
    if images.dtype != np.uint8:
        if not np.issubdtype(images.dtype, np.number) or images.size == 0:
            raise DiffkitError(f"{path}: images must be numeric uint8 0..255 (got {images.dtype})")
        low, high = float(images.min()), float(images.max())
        if low < 0 or high > 255 or not np.array_equal(images, np.round(images)):
            raise DiffkitError(f"{path}: image values must be integers in 0..255 (got {images.dtype} in "
                               f"[{low:.3g}, {high:.3g}]); convert [-1, 1] floats with round((x + 1) * 127.5)")
        images = images.astype(np.uint8)
    try:
        meta = json.loads(str(data["meta"])) if "meta" in data.files else {}
    except ValueError:
        raise DiffkitError(f"{path}: its 'meta' array is not the JSON diffkit writes; drop it or fix it") from None
    return torch.from_numpy(np.ascontiguousarray(images)), meta
