"""Parameters, training images/s and sampling images/s (DDPM-1000 vs DDIM-50) per network.

    python bench/speed.py            # record the output in docs/benchmarks.md

Sampling speed is timed over the first `--timed-steps` network evaluations of each sampler on one
batch and reported per full sampling run (per-step cost does not depend on t).
"""

import argparse
import time

import torch

from diffkit.config import PRESETS
from diffkit.run import build_degradation, build_network
from diffkit.sampler import timestep_pairs

NETWORKS = {
    "cnn (coursework)": ("cnn", PRESETS["coursework"]["network_options"]),
    "unet (defaults)": ("unet", {}),
    "unet (quick preset)": ("unet", PRESETS["quick"]["network_options"]),
}


def train_speed(network, degradation, batch, steps):
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-4)
    x = torch.rand(batch, 1, 28, 28) * 2 - 1
    for i in range(steps + 2):
        if i == 2:
            start = time.perf_counter()
        loss = degradation.training_losses(network, x, degradation.sample_timesteps(batch), torch.randn_like(x)).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return steps * batch / (time.perf_counter() - start)


@torch.no_grad()
def sample_speed(network, degradation, batch, steps, timed):
    """Images/s of a full `steps`-step sampling run, timed over `timed` of its steps."""
    x = torch.randn(batch, 1, 28, 28)
    pairs = timestep_pairs(degradation.T, steps)[:timed]
    network(x, torch.full((batch,), degradation.T))  # warm-up
    start = time.perf_counter()
    for t, _ in pairs:
        network(x, torch.full((batch,), t))
    per_step = (time.perf_counter() - start) / len(pairs)
    return batch / (per_step * steps)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--train-steps", type=int, default=10)
    parser.add_argument("--sample-batch", type=int, default=256)
    parser.add_argument("--timed-steps", type=int, default=50)
    args = parser.parse_args()
    torch.manual_seed(0)
    _, degradation = build_degradation("gaussian", {})
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; train batch {args.batch}, "
          f"sample batch {args.sample_batch}")
    print(f"{'network':22} {'params':>9} {'train img/s':>12} {'DDPM-1000 img/s':>16} {'DDIM-50 img/s':>14}")
    for label, (name, options) in NETWORKS.items():
        _, net = build_network(name, options, 1, 28)
        params = sum(p.numel() for p in net.parameters())
        train = train_speed(net, degradation, args.batch, args.train_steps)
        net.eval()
        ddpm = sample_speed(net, degradation, args.sample_batch, 1000, args.timed_steps)
        ddim = sample_speed(net, degradation, args.sample_batch, 50, args.timed_steps)
        print(f"{label:22} {params:>9,} {train:>12.0f} {ddpm:>16.2f} {ddim:>14.1f}")


if __name__ == "__main__":
    main()
