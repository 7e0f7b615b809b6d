"""The MNIST-family classifier whose features score every generator (no downloadable Inception here).

Trained by diffkit on the training split, cached in the user cache dir under the hash of that data,
and stored with its test accuracy and the hash of its weights. The weights hash names the
torch-fidelity feature extractor, since torch-fidelity's own caches are keyed by name only.
"""

import hashlib
import json
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from rich.progress import Progress
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from diffkit.atomic import atomic_path, write_text
from diffkit.data import default_cache_dir, load_images, load_labels, to_model_range

FEATURES = 128
EPOCHS = 6
ARCHITECTURE = "lenet-5x5-16-32-128"  # part of the cache key: change it when Classifier or training changes
BATCH = 128


class Classifier(nn.Module):
    """A LeNet-sized CNN: two 5×5 conv blocks -> 128-d features -> 10 logits (~6 MFLOP an image)."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(32 * 7 * 7, FEATURES), nn.ReLU(),
        )
        self.head = nn.Linear(FEATURES, 10)

    def forward(self, x):
        """x in [-1, 1] (B, 1, 28, 28) -> (features, logits)."""
        features = self.body(x)
        return features, self.head(features)


def cache_dir():
    """Where evaluation caches live: $DIFFKIT_CACHE, else the user cache dir."""
    return Path(os.environ.get("DIFFKIT_CACHE", default_cache_dir()))


def data_hash(images, labels):
    return hashlib.sha256(images.numpy().tobytes() + labels.numpy().tobytes()).hexdigest()


def weights_hash(model):
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode() + tensor.detach().cpu().numpy().tobytes())
    return h.hexdigest()


def shift(x, generator):
    """Random translations of up to 2 pixels: cheap augmentation that lifts accuracy on 10k images."""
    dy, dx = torch.randint(-2, 3, (2,), generator=generator).tolist()
    return torch.roll(x, shifts=(dy, dx), dims=(2, 3))


@torch.no_grad()
def accuracy(model, images, labels):
    model.eval()
    device = next(model.parameters()).device
    logits = torch.cat([model(to_model_range(chunk.to(device)))[1].cpu() for chunk in images.split(1000)])
    return (logits.argmax(1) == labels).float().mean().item()


def train_classifier(images, labels, seed=0, console=None, device="cpu"):
    """Train on `device`; batches and augmentation are drawn on the CPU, so the draws match everywhere."""
    torch.manual_seed(seed)
    model = Classifier().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    steps = EPOCHS * (len(images) // BATCH)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=steps)
    g = torch.Generator().manual_seed(seed)
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("training the evaluation classifier", total=steps)
        for _ in range(EPOCHS):
            model.train()
            perm = torch.randperm(len(images), generator=g)
            for i in range(len(images) // BATCH):
                idx = perm[i * BATCH:(i + 1) * BATCH]
                x = shift(to_model_range(images[idx]), g).to(device)
                loss = F.cross_entropy(model(x)[1], labels[idx].to(device))
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                schedule.step()
                progress.advance(task)
    return model.eval()


def load_classifier(dataset="mnist", data_root=None, console=None, device="cpu"):
    """(model on `device`, info) for a dataset, trained on its training split on first use and cached after.

    The cache is shared by every device: a classifier trained on a GPU scores CPU runs too (the
    extractor's name carries its weights hash, so reports say which one scored them)."""
    images, labels = load_images(dataset, "train", data_root), load_labels(dataset, "train", data_root)
    key = f"{dataset}-{ARCHITECTURE}-e{EPOCHS}-{data_hash(images, labels)[:16]}"
    folder = cache_dir() / "classifiers"
    weights, meta = folder / f"{key}.safetensors", folder / f"{key}.json"
    model = Classifier()
    if weights.exists() and meta.exists():
        try:
            model.load_state_dict(load_file(weights))
            info = json.loads(meta.read_text())
        except (OSError, ValueError, RuntimeError, SafetensorError):
            info = {}  # unreadable or stale cache: train again
        if info.get("weights_sha256") == weights_hash(model):
            return model.to(device).eval(), info
    model = train_classifier(images, labels, console=console, device=device)
    test_acc = accuracy(model, load_images(dataset, "test", data_root), load_labels(dataset, "test", data_root))
    info = {"dataset": dataset, "architecture": ARCHITECTURE, "train_data_sha256": data_hash(images, labels), "train_images": len(images),
            "test_accuracy": test_acc, "weights_sha256": weights_hash(model), "epochs": EPOCHS}
    with atomic_path(weights) as tmp:
        save_file({k: v.detach().cpu() for k, v in model.state_dict().items()}, tmp)
    write_text(meta, json.dumps(info, indent=2))
    return model, info
