"""The MNIST-family classifier whose features score every generator (no downloadable Inception here).

Trained by diffkit on the training split, cached in the user cache dir under the hash of that data,
and stored with its test accuracy and the hash of its weights. The weights hash names the
torch-fidelity feature extractor, since torch-fidelity's own caches are keyed by name only.
"""

import torch
import torch.nn.functional as F
from torch import nn

from diffkit.data import load_images, load_labels, to_model_range
from diffkit_eval.netcache import cached_network, data_hash, fit

FEATURES = 128
EPOCHS = 6
ARCHITECTURE = "lenet-5x5-16-32-128"  # part of the cache key: change it when Classifier or training changes


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


@torch.no_grad()
def accuracy(model, images, labels):
    model.eval()
    device = next(model.parameters()).device
    logits = torch.cat([model(to_model_range(chunk.to(device)))[1].cpu() for chunk in images.split(1000)])
    return (logits.argmax(1) == labels).float().mean().item()


def train_classifier(images, labels, seed=0, console=None, device="cpu"):
    def loss(model, x, idx):
        return F.cross_entropy(model(x)[1], labels[idx].to(x.device))

    return fit(Classifier, images, loss, EPOCHS, seed, "classifier", console, device)


def load_classifier(dataset="mnist", data_root=None, console=None, device="cpu"):
    """(model on `device`, info) for a dataset, trained on its training split on first use and cached after.

    The cache is shared by every device: a classifier trained on a GPU scores CPU runs too (the
    extractor's name carries its weights hash, so reports say which one scored them)."""
    images, labels = load_images(dataset, "train", data_root), load_labels(dataset, "train", data_root)
    key = f"{dataset}-{ARCHITECTURE}-e{EPOCHS}-{data_hash(images, labels)[:16]}"

    def train():
        model = train_classifier(images, labels, console=console, device=device)
        test_acc = accuracy(model, load_images(dataset, "test", data_root), load_labels(dataset, "test", data_root))
        return model, {"dataset": dataset, "architecture": ARCHITECTURE, "train_data_sha256": data_hash(images, labels),
                       "train_images": len(images), "test_accuracy": test_acc, "epochs": EPOCHS}

    return cached_network("classifiers", key, Classifier(), train, device)
