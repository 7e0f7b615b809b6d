"""A second feature space that owes nothing to the labels: a small convolutional autoencoder's latent code.

A ranking of generators that holds in the classifier's space and in this one is a finding; a pair whose
order flips between them is flagged in the report. Trained on the training split with its own seed and
architecture, cached like the classifier (`netcache`), and named after its weights.
"""

import torch
import torch.nn.functional as F
from torch import nn

from diffkit.data import load_images, load_labels, to_model_range
from diffkit_eval.netcache import cached_network, data_hash, fit

LATENT = 64
EPOCHS = 8
SEED = 1  # not the classifier's 0: an independent draw
ARCHITECTURE = "ae-3x3-32-64-z64"  # part of the cache key: change it when Autoencoder or training changes


class Autoencoder(nn.Module):
    """28×28 -> two stride-2 3×3 convolutions -> a 64-d code -> two transposed convolutions -> 28×28."""

    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(1, 32, 3, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.SiLU(),
            nn.Flatten(), nn.Linear(64 * 7 * 7, LATENT),
        )
        self.decoder = nn.Sequential(
            nn.Linear(LATENT, 64 * 7 * 7), nn.SiLU(), nn.Unflatten(1, (64, 7, 7)),
            nn.ConvTranspose2d(64, 32, 4, stride=2, padding=1), nn.SiLU(),
            nn.ConvTranspose2d(32, 1, 4, stride=2, padding=1), nn.Tanh(),
        )

    def forward(self, x):
        """x in [-1, 1] (B, 1, 28, 28) -> (code, reconstruction)."""
        code = self.encoder(x)
        return code, self.decoder(code)


def reconstruction_rmse(model, images):
    """RMSE in [0, 1] pixel units over `images`: how much of a digit the 64 numbers keep."""
    device = next(model.parameters()).device
    with torch.no_grad():
        errors = [(model(x)[1] - x).pow(2).mean().item()
                  for x in (to_model_range(chunk.to(device)) for chunk in images.split(1000))]
    return (sum(errors) / len(errors)) ** 0.5 / 2


def train_autoencoder(images, console=None, device="cpu"):
    def loss(model, x, idx):
        return F.mse_loss(model(x)[1], x)

    return fit(Autoencoder, images, loss, EPOCHS, SEED, "autoencoder", console, device, lr=2e-3)


def load_autoencoder(dataset="mnist", data_root=None, console=None, device="cpu"):
    """(model on `device`, info), trained on the dataset's training split on first use and cached after."""
    images, labels = load_images(dataset, "train", data_root), load_labels(dataset, "train", data_root)
    key = f"{dataset}-{ARCHITECTURE}-e{EPOCHS}-s{SEED}-{data_hash(images, labels)[:16]}"

    def train():
        model = train_autoencoder(images, console, device)
        return model, {"dataset": dataset, "architecture": ARCHITECTURE, "train_data_sha256": data_hash(images, labels),
                       "train_images": len(images), "epochs": EPOCHS, "seed": SEED,
                       "test_rmse": reconstruction_rmse(model, load_images(dataset, "test", data_root))}

    return cached_network("autoencoders", key, Autoencoder(), train, device)
