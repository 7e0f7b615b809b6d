"""Evaluation networks (the classifier, the autoencoder) trained by diffkit on first use and cached.

A network is cached under a key naming its dataset, architecture and the hash of its training data, and
checked on load by the hash of its weights, which also names the feature space in every report: new
weights are a new name, never a stale cache.
"""

import hashlib
import json
import os
from pathlib import Path

import torch
from rich.progress import Progress
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from diffkit.atomic import atomic_path, write_text
from diffkit.checkpoint import tensors_sha256
from diffkit.data import default_cache_dir, to_model_range


def cache_dir():
    """Where evaluation caches live: $DIFFKIT_CACHE, else the user cache dir."""
    return Path(os.environ.get("DIFFKIT_CACHE", default_cache_dir()))


def data_hash(images, labels):
    return hashlib.sha256(images.numpy().tobytes() + labels.numpy().tobytes()).hexdigest()


def weights_hash(model):
    return tensors_sha256(model.state_dict())


def shift(x, generator):
    """Random translations of up to 2 pixels: cheap augmentation that lifts accuracy on 10k images."""
    dy, dx = torch.randint(-2, 3, (2,), generator=generator).tolist()
    return torch.roll(x, shifts=(dy, dx), dims=(2, 3))


def fit(build, images, loss, epochs, seed, what, console=None, device="cpu", lr=1e-3, batch=128):
    """Train a fresh `build()` (made after seeding) on uint8 `images` for `epochs` with Adam and a one-cycle schedule; `loss(model, x, idx)`
    scores a batch x (shifted, in [-1, 1], on `device`) of the images at indices idx. Batches and
    augmentation are drawn on the CPU, so the draws match on every device."""
    torch.manual_seed(seed)
    model = build().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    steps = epochs * (len(images) // batch)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=steps)
    g = torch.Generator().manual_seed(seed)
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(f"training the evaluation {what}", total=steps)
        for _ in range(epochs):
            model.train()
            perm = torch.randperm(len(images), generator=g)
            for i in range(len(images) // batch):
                idx = perm[i * batch:(i + 1) * batch]
                value = loss(model, shift(to_model_range(images[idx]), g).to(device), idx)
                optimizer.zero_grad()
                value.backward()
                optimizer.step()
                schedule.step()
                progress.advance(task)
    return model.eval()


def cached_network(kind, key, model, train, device="cpu"):
    """(model on `device`, info): the cached weights of `kind`/`key` loaded into `model`, or `train()`'s
    (model, info) saved there first. An unreadable or tampered cache is trained again."""
    folder = cache_dir() / kind
    weights, meta = folder / f"{key}.safetensors", folder / f"{key}.json"
    if weights.exists() and meta.exists():
        try:
            model.load_state_dict(load_file(weights))
            info = json.loads(meta.read_text())
        except (OSError, ValueError, RuntimeError, SafetensorError):
            info = {}
        if info.get("weights_sha256") == weights_hash(model):
            return model.to(device).eval(), info
    model, info = train()
    info = {**info, "weights_sha256": weights_hash(model)}
    with atomic_path(weights) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, tmp)
    write_text(meta, json.dumps(info, indent=2))
    return model.to(device).eval(), info
