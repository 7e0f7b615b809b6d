"""The statistics stage: what a set of real images looks like in a feature space, computed once and cached.

A space's reference holds the split's features, their FID statistics and the k-NN radii that precision,
recall, density and coverage need. It is cached under the space's version and a hash of the images, so
the same official test split gives the same reference on every machine.

The memorisation reference (pixel-space distances of test images to their nearest training images) is the
one figure that depends on the training split a machine holds: copying is measured against what a model
could have seen. It is cached under the training data's hash.
"""

import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import save_file

from diffkit.atomic import atomic_path
from diffkit.checkpoint import read_tensors
from diffkit.data import default_cache_dir
from diffkit_eval.features import extract, images_hash
from diffkit_eval.metrics import DC_K, PR_K, fid_statistics, knn_space, kth_radius, nearest_training

def cache_dir():
    """Where evaluation caches live: $DIFFKIT_CACHE, else the user cache dir."""
    return Path(os.environ.get("DIFFKIT_CACHE", default_cache_dir()))


SPACE_KEYS = {"features", "mu", "sigma", "pr_radii", "dc_radii"}
MEMORY_KEYS = {"test_nn", "train_nn", "test_authenticity"}


def _cached(path, keys, compute):
    """The tensors stored at `path`, or compute() stored there first (a missing or unreadable file is remade)."""
    try:
        stored = read_tensors(path)
        if keys <= set(stored):
            return stored
    except (OSError, SafetensorError, ValueError):
        pass
    stored = compute()
    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in stored.items()}, tmp)
    return stored


def reference_statistics(features):
    """FID statistics and k-NN radii of a set of reference features (already extracted)."""
    stats = fid_statistics(features)
    points = knn_space(features)
    return {"features": features, "mu": stats["mu"], "sigma": stats["sigma"],
            "pr_radii": kth_radius(points, PR_K), "dc_radii": kth_radius(points, DC_K)}


def space_reference(space, images, label):
    """{"features", "mu", "sigma", "pr_radii", "dc_radii"} (and "logits" when the space has them) of the real
    images in one space; `label` ("mnist-test", say) names the cache file beside the space and the images' hash."""
    path = cache_dir() / "references" / f"{space.version}-{label}-{images_hash(images)[:16]}.safetensors"

    def compute():
        out = extract(space, images)
        return {**reference_statistics(out["features"]), **({"logits": out["logits"]} if "logits" in out else {})}

    return _cached(path, SPACE_KEYS, compute)


def memorisation_reference(test_images, train_images):
    """{"test_nn", "train_nn", "test_authenticity"}: each test image's and each training image's pixel distance to
    its nearest (other) training image, and the authenticity of unseen real digits."""
    key = images_hash(torch.cat([test_images, train_images]))[:16]

    def compute():
        train_nn = nearest_training(train_images, train_images, exclude_self=True)[0]
        test_nn, nearest = nearest_training(test_images, train_images)
        return {"test_nn": test_nn, "train_nn": train_nn,
                "test_authenticity": (test_nn > train_nn[nearest]).double().mean().reshape(1)}

    return _cached(cache_dir() / "references" / f"memorisation-{key}.safetensors", MEMORY_KEYS, compute)
