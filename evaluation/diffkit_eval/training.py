"""The training loop of the evaluation's networks (the classifier, the autoencoder), which `spaces.train_space`
runs once per release of the shipped feature spaces."""

import torch
from rich.progress import Progress

from diffkit.data import to_model_range


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
