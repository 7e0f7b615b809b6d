"""The MNIST-family classifier whose features score every generator: its architecture and its training.

Trained once per dataset and shipped (`spaces.py`); its features are the default feature space.
"""

import torch
import torch.nn.functional as F
from torch import nn

from diffkit.data import to_model_range
from diffkit_eval.training import fit

FEATURES = 128
EPOCHS = 6
ARCHITECTURE = "lenet-5x5-16-32-128"  # recorded in the shipped weights: change it when Classifier or training changes


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
