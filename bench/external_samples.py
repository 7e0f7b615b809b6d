"""Samples from another library, written as it writes them, for `diffkit evaluate` and a compare `[[samples]]`:
a tiny lucidrains/denoising-diffusion-pytorch model trained on the same MNIST training split, its samples
saved one PNG each with torchvision's save_image (RGB files with three equal channels).

    pip install denoising-diffusion-pytorch
    DIFFKIT_DATA=../shared/data python bench/external_samples.py --out external/ddpm-pytorch --steps 400 -n 500
    diffkit evaluate external/ddpm-pytorch

Nothing here is diffkit's: the model, its loss, its sampler and the file format are the other library's.
"""

import argparse
import time
from pathlib import Path

import torch
from denoising_diffusion_pytorch import GaussianDiffusion, Unet
from torchvision.utils import save_image

from diffkit.data import load_images


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("-n", type=int, default=500)
    parser.add_argument("--sampling-steps", type=int, default=25)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = Unet(dim=16, dim_mults=(1, 2, 2), channels=1)
    diffusion = GaussianDiffusion(model, image_size=28, timesteps=1000, sampling_timesteps=args.sampling_steps)
    images = load_images("mnist", "train").float() / 255
    optimizer = torch.optim.Adam(diffusion.parameters(), lr=1e-3)
    start = time.perf_counter()
    for step in range(args.steps):
        batch = images[torch.randint(0, len(images), (args.batch_size,))]
        loss = diffusion(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 50 == 0:
            print(f"step {step} loss {loss.item():.4f} ({time.perf_counter() - start:.0f} s)", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    done = 0
    with torch.no_grad():
        while done < args.n:
            batch = diffusion.sample(batch_size=min(100, args.n - done))
            for image in batch:
                save_image(image, out / f"{done:05d}.png")
                done += 1
    print(f"wrote {done} PNGs to {out} ({time.perf_counter() - start:.0f} s in all)")


if __name__ == "__main__":
    main()
