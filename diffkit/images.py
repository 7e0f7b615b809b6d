"""Image files: sample grids and trajectory strips as PNG, written atomically."""

import math

import torch
from PIL import Image
from torchvision.utils import make_grid

from diffkit.atomic import atomic_path
from diffkit.errors import DiffkitError


def check_png(path, option):
    """A grid is always written as PNG: a name ending otherwise (g.jpg) would hold a PNG under a false name."""
    if not str(path).lower().endswith(".png"):
        raise DiffkitError(f"{option} must be a .png file, got {path}")


def save_grid(path, images, nrow=None):
    """Save uint8 images (N, C, H, W) as one PNG grid, nrow per row (default: square)."""
    images = torch.as_tensor(images)
    nrow = nrow or math.ceil(math.sqrt(len(images)))
    grid = make_grid(images, nrow=nrow, padding=2, pad_value=255)  # uint8 in, uint8 out
    array = grid.permute(1, 2, 0).numpy()
    with atomic_path(path) as tmp:
        Image.fromarray(array[..., 0] if array.shape[2] == 1 else array).save(tmp, format="PNG")


def class_rows(images, labels, per_row=10):
    """(images, nrow) for a grid of at most 100 images: with class labels, one row per class (its first
    `per_row` images, the same number in every row), else the first 100 in rows of `per_row`."""
    if labels is None:
        return images[:100], per_row
    rows = [images[labels == c][:per_row] for c in labels.unique().tolist()[:10]]
    width = min(len(r) for r in rows)
    return torch.cat([r[:width] for r in rows]), width
