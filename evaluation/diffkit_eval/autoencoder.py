"""A second feature space that owes nothing to the labels: a small convolutional autoencoder's latent code.

A ranking of generators that holds in the classifier's space and in this one is a finding; a pair whose
order flips between them is flagged in the report. Trained on the training split with its own seed and
architecture, and shipped like the classifier (`spaces.py`).
"""

import torch
import torch.nn.functional as F
from torch import nn

from diffkit.data import to_model_range
from diffkit_eval.training import fit

LATENT = 64
EPOCHS = 8
SEED = 1  # not the classifier's 0: an independent draw
ARCHITECTURE = "ae-3x3-32-64-z64"  # recorded in the shipped weights: change it when Autoencoder or training changes


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
