"""Reference statistics of a real split, computed once per extractor and cached.

Held-out test images are the default reference; the memorisation figure always compares against
the nearest-training-image distances of the test split, which no generator has seen.
"""

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch_fidelity.metric_fid import fid_features_to_statistics

from diffkit.atomic import atomic_path
from diffkit.data import SPLITS, load_images
from diffkit.errors import DiffkitError
from diffkit_eval.classifier import cache_dir
from diffkit_eval.metrics import DC_K, PR_K, knn_space, kth_radius, nearest_distance


KEYS = {"features", "logits", "pr_radii", "dc_radii", "test_nn", "mu", "sigma"}


def _read_cache(path):
    """The cached reference, or None when it is missing or unreadable (then it is computed again)."""
    try:
        stored = load_file(path)
    except (OSError, SafetensorError, ValueError):
        return None
    return stored if KEYS <= set(stored) else None


def load_reference(extractor, dataset, split="test", data_root=None):
    if split not in SPLITS:
        raise DiffkitError(f"unknown reference split {split!r}; choose one of {', '.join(SPLITS)}")
    path = cache_dir() / "references" / f"{extractor.name}-{split}.safetensors"
    train_images = load_images(dataset, "train", data_root)
    stored = _read_cache(path)
    if stored is None:
        images = load_images(dataset, split, data_root)
        out = extractor(images)
        test = images if split == "test" else load_images(dataset, "test", data_root)
        stats = fid_features_to_statistics(out["features"].double())
        stored = {"features": out["features"], "logits": out["logits"], "pr_radii": kth_radius(knn_space(out["features"]), PR_K),
                  "dc_radii": kth_radius(knn_space(out["features"]), DC_K),
                  "test_nn": nearest_distance(test, train_images),
                  "mu": torch.from_numpy(stats["mu"]), "sigma": torch.from_numpy(stats["sigma"])}
        with atomic_path(path) as tmp:
            save_file({k: v.contiguous() for k, v in stored.items()}, tmp)
    return {**stored, "fid_stats": {"mu": stored["mu"].numpy().astype(np.float64), "sigma": stored["sigma"].numpy()},
            "train_images": train_images, "split": split, "dataset": dataset}
