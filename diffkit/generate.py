"""Sampling: prior draws x_T -> sampler (through a Denoiser) -> uint8 images with their provenance.

x_T always comes from the degradation's fitted prior, never from degraded real images; a conditional run
also gets the class label of each image, and may be guided towards it.
"""

import json
import zipfile
from dataclasses import dataclass

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from diffkit import distributed, draws
from diffkit.atomic import atomic_path
from diffkit.data import to_uint8
from diffkit.degradation import labels_for
from diffkit.denoiser import Denoiser
from diffkit.errors import DiffkitError


MAX_SAMPLES = 1_000_000  # a bound on -n: 1,000,000 MNIST images are 784 MB of uint8
MAX_BATCH = 65_536  # as for training


def check_count(n):
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_SAMPLES:
        raise DiffkitError(f"-n must be a positive integer up to {MAX_SAMPLES:,}, got {n!r}")


@dataclass
class Samples:
    """uint8 images (N, C, H, W) on the CPU, the metadata that made them, the class each image was asked to
    be (N,) for a conditional run, and the first batch's reverse path [x_T, ..., x_0] as uint8 when it was
    asked for."""

    images: torch.Tensor
    meta: dict
    trajectory: list | None = None
    labels: torch.Tensor | None = None

    def save(self, path):
        save_samples(path, self.images, self.meta, self.labels)

    def path_grid(self, count=10):
        """(images, frames per row) for `save_grid`: each traced sample's row of about `count` frames, x_T to x_0."""
        path = self.trajectory
        frames = path[:: max(1, len(path) // count)][:count] + [path[-1]]
        return torch.stack(frames, dim=1).flatten(0, 1), len(frames)


def _sample_batch(run, plan, index, size, shape, seed, labels, trajectory_count, on_step):
    generator = run.generator(seed, index)
    prior = run.degradation.sample_prior
    x_T = prior(size, shape, generator, **labels_for(prior, labels)).to(run.device)
    params = draws.to_device(run.degradation.draw_params(size, generator), run.device)
    want_path = index == 0 and trajectory_count > 0
    denoiser = Denoiser(run.model, run.degradation, None if labels is None else labels.to(run.device), plan.guidance,
                        run.network.classes)
    result = plan.sampler.sample(denoiser, x_T, plan.steps, generator, trajectory=want_path, on_step=on_step,
                                 params=params)
    if want_path:
        result, path = result
    if not torch.isfinite(result).all():
        raise DiffkitError(f"sampler {plan.name!r} produced non-finite images in batch {index}: the network or "
                           f"the sampler diverged; try another sampler or more --steps")
    if want_path:
        return to_uint8(result).cpu(), [to_uint8(x[:trajectory_count]).cpu() for x in path]
    return to_uint8(result).cpu(), None


def generate(run, n, plan, seed=0, batch_size=256, trajectory_count=0, console=None, labels=None):
    """Sample n images with a planned sampler (`Run.plan`), image i of class labels[i] if labels (n,) are given
    (`Run.labels`). Returns `Samples`.

    Batch i draws from the generator of (seed, i) alone, so under torchrun each rank samples every
    world_size-th batch and the gathered result is the same, bit for bit, as one process's."""
    check_count(n)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or not 1 <= batch_size <= MAX_BATCH:
        raise DiffkitError(f"--batch-size must be a positive integer up to {MAX_BATCH:,}, got {batch_size!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise DiffkitError(f"--seed must be an integer in 0..{2**32 - 1}, got {seed!r}")
    network = run.network
    shape = (network.channels, network.image_size, network.image_size)
    starts = list(range(0, n, batch_size))
    sizes = [min(batch_size, n - i) for i in starts]
    mine = list(range(distributed.rank(), len(sizes), distributed.world_size()))
    done, trajectory = {}, None
    columns = (TextColumn(f"[bold]sample[/] {plan.name}×{plan.steps}"), BarColumn(), MofNCompleteColumn(),
               TimeRemainingColumn())
    with Progress(*columns, console=console, disable=not distributed.is_main()) as progress:
        task = progress.add_task("sample", total=len(mine) * plan.jumps)  # on_step comes once a jump
        for index in mine:
            mine_labels = None if labels is None else labels[starts[index]:starts[index] + sizes[index]]
            done[index], path = _sample_batch(run, plan, index, sizes[index], shape, seed, mine_labels,
                                              trajectory_count, lambda: progress.advance(task))
            trajectory = path or trajectory
    for part in distributed.gather(done):
        done.update(part)
    trajectory = distributed.gather(trajectory)[0]  # batch 0 is rank 0's
    meta = {
        "n": n, "seed": seed, "batch_size": batch_size,
        "sampler": plan.name, "sampler_options": plan.sampler.options.__dict__,
        "steps": plan.steps, "jumps": plan.jumps, "nfe": plan.nfe,
        **({"classes": class_counts(labels, run.network.classes), "guidance": plan.guidance} if labels is not None
           else {}),
        "device": str(run.device), "precision": run.precision, "world_size": distributed.world_size(),
        "training_step": run.step, "weights_sha256": run.weights_sha256, "config": run.config.to_dict(),
        "versions": run.versions(plan.component),
    }
    return Samples(torch.cat([done[i] for i in range(len(sizes))]), meta, trajectory, labels)


def class_counts(labels, classes):
    """{"0": count, ..., "none": count of the null label} for a sample's metadata."""
    counts = torch.bincount(labels, minlength=classes + 1).tolist()
    return {**{str(c): counts[c] for c in range(classes) if counts[c]}, **({"none": counts[classes]} if counts[classes] else {})}


def save_samples(path, images, meta, labels=None):
    """npz with `images` uint8 (N, H, W) for 1 channel or (N, H, W, C), `meta` as a JSON string and, for a
    conditional run, `labels` int64 (N,): the class each image was asked to be (the null label: no class)."""
    from pathlib import Path

    folder = isinstance(path, (str, Path)) and Path(path).is_dir()
    if folder or not isinstance(path, (str, Path)) or not str(path).endswith(".npz"):
        raise DiffkitError(f"samples are saved to a .npz file, not {str(path)!r}" + (" (a folder)" if folder else ""))
    array = images.numpy()
    array = array[:, 0] if array.shape[1] == 1 else array.transpose(0, 2, 3, 1)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            extra = {} if labels is None else {"labels": labels.numpy().astype(np.int64)}
            np.savez_compressed(f, images=array, meta=np.array(json.dumps(meta)), **extra)


def load_samples(path, image_size=28, channels=1):
    """`Samples` (uint8 images (N, C, H, W), meta, labels) from a samples .npz, with one-line errors for bad files.

    Images must be integers in 0..255 (uint8 or another integer type): float arrays are refused, since a
    [-1, 1] or [0, 1] float array read as pixels would score as black images without a word."""
    try:
        with np.load(path, allow_pickle=False) as data:
            files = data.files
            images = data["images"] if "images" in files else None
            raw_meta = data["meta"] if "meta" in files else None
            labels = data["labels"] if "labels" in files else None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise DiffkitError(f"cannot read {path} as a samples .npz: {exc}".splitlines()[0]) from None
    if images is None:
        raise DiffkitError(f"{path} has no 'images' array (found: {', '.join(files) or 'nothing'})")
    shape = images.shape
    if images.ndim == 3:
        images = images[:, None]
    elif images.ndim == 4 and images.shape[-1] == channels and images.shape[1] != channels:
        images = images.transpose(0, 3, 1, 2)
    if images.ndim != 4 or images.shape[1:] != (channels, image_size, image_size) or len(images) == 0:
        raise DiffkitError(f"{path}: images must be N×{image_size}×{image_size} with N ≥ 1 (got shape {shape})")
    if images.dtype != np.uint8:
        if not np.issubdtype(images.dtype, np.integer):
            raise DiffkitError(f"{path}: images must be uint8 0..255 (got {images.dtype}); convert [-1, 1] floats "
                               f"with np.round((x + 1) * 127.5).astype(np.uint8)")
        low, high = int(images.min()), int(images.max())
        if low < 0 or high > 255:
            raise DiffkitError(f"{path}: image values must be in 0..255 (got {images.dtype} in [{low}, {high}])")
        images = images.astype(np.uint8)
    try:
        meta = json.loads(str(raw_meta)) if raw_meta is not None else {}
        if not isinstance(meta, dict):
            raise ValueError
    except ValueError:
        raise DiffkitError(f"{path}: its 'meta' array is not the JSON diffkit writes; drop it or fix it") from None
    labels = None if labels is None else checked_labels(labels, len(images), path)
    return Samples(torch.from_numpy(np.ascontiguousarray(images)), meta, labels=labels)


def checked_labels(labels, count, path):
    """A samples file's `labels` array as int64 (N,), or one line if it is not one integer class per image."""
    if labels.shape != (count,) or not np.issubdtype(labels.dtype, np.integer):
        raise DiffkitError(f"{path}: 'labels' must be one integer class per image (got {labels.dtype} {labels.shape})")
    return torch.from_numpy(labels.astype(np.int64))
