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
from diffkit_eval.netcache import cache_dir
from diffkit_eval.metrics import DC_K, PR_K, knn_space, kth_radius, nearest_training


KEYS = {"features", "logits", "pr_radii", "dc_radii", "test_nn", "train_nn", "test_authenticity", "mu", "sigma"}


def _read_cache(path, keys=KEYS):
    """The cached reference, or None when it is missing or unreadable (then it is computed again)."""
    try:
        stored = load_file(path)
    except (OSError, SafetensorError, ValueError):
        return None
    return stored if keys <= set(stored) else None


def _write_cache(path, stored):
    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in stored.items()}, tmp)


def fid_stats(features):
    """torch-fidelity's {"mu", "sigma"} of a feature set, in float64."""
    stats = fid_features_to_statistics(features.double())
    return {"mu": stats["mu"].astype(np.float64), "sigma": stats["sigma"]}


def load_code_reference(space, dataset, split="test", data_root=None):
    """FID statistics of a split in a second feature space (the autoencoder's), cached under its name."""
    path = cache_dir() / "references" / f"{space.name}-{split}.safetensors"
    stored = _read_cache(path, {"mu", "sigma"})
    if stored is None:
        stats = fid_stats(space(load_images(dataset, split, data_root)))
        stored = {"mu": torch.from_numpy(stats["mu"]), "sigma": torch.from_numpy(stats["sigma"])}
        _write_cache(path, stored)
    return {"mu": stored["mu"].numpy().astype(np.float64), "sigma": stored["sigma"].numpy()}


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
        stats = fid_stats(out["features"])
        stored = {"features": out["features"], "logits": out["logits"], "pr_radii": kth_radius(knn_space(out["features"]), PR_K),
                  "dc_radii": kth_radius(knn_space(out["features"]), DC_K),
                  "train_nn": nearest_training(train_images, train_images, exclude_self=True)[0]}
        test_nn, nearest = nearest_training(test, train_images)
        stored.update({"test_nn": test_nn, "test_authenticity": (test_nn > stored["train_nn"][nearest]).double().mean(),
                       "mu": torch.from_numpy(stats["mu"]), "sigma": torch.from_numpy(stats["sigma"])})
        _write_cache(path, stored)
    return {**stored, "fid_stats": {"mu": stored["mu"].numpy().astype(np.float64), "sigma": stored["sigma"].numpy()},
            "test_authenticity": float(stored["test_authenticity"]),
            "train_images": train_images, "split": split, "dataset": dataset}
