"""Samples: uint8 images with the metadata that made them and, for a conditional run, their class labels, and
their .npz file (`Run.sample` makes them).
"""

import json
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from diffkit import distributed
from diffkit.atomic import atomic_path, refuse_link, write_text
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
    path: list | None = None
    labels: torch.Tensor | None = None

    def save(self, path):
        save_samples(path, self.images, self.meta, self.labels)

    def path_grid(self, count=10):
        """(images, frames per row) for `save_grid`: each traced sample's row of about `count` frames, x_T to x_0."""
        path = self.path
        frames = path[:: max(1, len(path) // count)][:count] + [path[-1]]
        return torch.stack(frames, dim=1).flatten(0, 1), len(frames)


def class_counts(labels, classes):
    """{"0": count, ..., "none": count of the null label} for a sample's metadata."""
    counts = torch.bincount(labels, minlength=classes + 1).tolist()
    return {**{str(c): counts[c] for c in range(classes) if counts[c]}, **({"none": counts[classes]} if counts[classes] else {})}


def save_samples(path, images, meta, labels=None):
    """npz with `images` uint8 (N, H, W) for 1 channel or (N, H, W, C), `meta` as a JSON string and, for a
    conditional run, `labels` int64 (N,): the class each image was asked to be (the null label: no class)."""
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


class BatchStore:
    """The finished batches of one sampling request, in a hidden folder beside its output, so that an interrupted
    `diffkit sample` or compare sampling cell goes on from where it stopped. Batch i is drawn from the generator of
    (seed, i) alone, so a batch read back is the very batch that would be drawn again. The folder holds the
    request's key; a folder made for another request (other weights, sampler, seed, N...) is emptied first."""

    def __init__(self, folder, key):
        self.folder = Path(folder)
        refuse_link(self.folder, "a sampling's finished batches")  # checked on every rank, so all stop alike
        if self.folder.exists() and not self.folder.is_dir():
            raise DiffkitError(f"{self.folder} is a file; diffkit keeps a sampling's finished batches in a folder "
                               f"of that name: remove the file and run again")
        if distributed.is_main():
            marker = self.folder / "request"
            if self.folder.is_dir() and (not marker.is_file() or marker.read_text() != key):
                shutil.rmtree(self.folder)
            self.folder.mkdir(parents=True, exist_ok=True)
            if not marker.is_file():
                write_text(marker, key)
        distributed.barrier()

    def _file(self, index):
        return self.folder / f"batch-{index:06d}.npz"

    def done(self):
        """How many batches the folder holds."""
        return len(list(self.folder.glob("batch-*.npz")))

    def get(self, index):
        """(uint8 images, reverse path or None, seconds it took) of batch `index`, or None when it is not stored
        (or unreadable: it is drawn again)."""
        try:
            with np.load(self._file(index), allow_pickle=False) as data:
                path = list(torch.from_numpy(data["path"])) if "path" in data.files else None
                return torch.from_numpy(data["images"]), path, float(data["seconds"])
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            return None

    def put(self, index, images, path, seconds):
        with atomic_path(self._file(index)) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, images=images.numpy(), seconds=np.array(seconds),
                         **({} if path is None else {"path": torch.stack(path).numpy()}))


def batches_folder(out):
    """Where the finished batches of the samples for file `out` wait (see BatchStore): .NAME.batches beside it."""
    out = Path(out)
    return out.parent / f".{out.name}.batches"


def discard_batches(out):
    """Delete the batches of `out` once `out` itself is written."""
    if distributed.is_main():
        shutil.rmtree(batches_folder(out), ignore_errors=True)
