"""Datasets as in-memory uint8 tensors (N, C, H, W), read through torchvision.

The root is `--data-root`, else $DIFFKIT_DATA, else a user cache dir where torchvision may download.
An explicit root is never downloaded into: missing files there are an error that says what to fix.
"""

import os
from pathlib import Path

import torch
import torchvision

from diffkit.config import DATASET_NAMES
from diffkit.errors import DiffkitError

DATASETS = {"mnist": torchvision.datasets.MNIST, "fashion-mnist": torchvision.datasets.FashionMNIST}
assert set(DATASETS) == set(DATASET_NAMES), "diffkit.config.DATASET_NAMES must list the datasets"
SPLITS = ("train", "test")


def default_cache_dir():
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "diffkit"


def resolve_root(root=None):
    """(root, may_download): explicit roots are read-only, the cache dir may be downloaded into."""
    if root:
        return Path(root), False
    if os.environ.get("DIFFKIT_DATA"):
        return Path(os.environ["DIFFKIT_DATA"]), False
    return default_cache_dir() / "data", True


def _dataset(name, split, root):
    if name not in DATASETS:
        raise DiffkitError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}")
    if split not in SPLITS:
        raise DiffkitError(f"unknown split {split!r}; known splits: {', '.join(SPLITS)}")
    path, download = resolve_root(root)
    cls = DATASETS[name]
    try:
        return cls(str(path), train=(split == "train"), download=download)
    except Exception as exc:  # torchvision raises RuntimeError when missing, URLError/OSError offline
        raise DiffkitError(
            f"{name} {split} data not found under {path} ({type(exc).__name__}); set DIFFKIT_DATA or "
            f"--data-root to a folder holding {cls.__name__}/raw/*-ubyte files (torchvision's layout)"
        ) from None


def load_images(name="mnist", split="train", root=None):
    """All images of a split as uint8 (N, 1, H, W); N is read from the files."""
    return _dataset(name, split, root).data.unsqueeze(1).contiguous()


def load_labels(name="mnist", split="train", root=None):
    return _dataset(name, split, root).targets.clone()


def to_model_range(images):
    """uint8 [0, 255] -> float [-1, 1]."""
    return images.float() / 127.5 - 1


def to_uint8(x):
    """float [-1, 1] -> uint8 [0, 255], clipping what a sampler overshoots."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
