"""Restoration of real degraded test images (the cold-diffusion paper's Tables 1–3).

This is not generation: x_T = D(x0, T) comes from real held-out images. It is reported in its own,
clearly labelled table; unconditional samples always start from the fitted prior.
"""

import torch
from torchmetrics.functional.image import structural_similarity_index_measure

from diffkit.data import load_images, to_model_range, to_uint8


def restoration_metrics(restored, originals):
    """RMSE and SSIM in [0, 1] pixel units, per image then averaged, with standard errors."""
    a, b = restored.float() / 255, originals.float() / 255
    rmse = (a - b).pow(2).mean(dim=(1, 2, 3)).sqrt()
    ssim = structural_similarity_index_measure(a, b, data_range=1.0, reduction="none")
    n = len(a)
    return {"rmse": {"value": rmse.mean().item(), "std": (rmse.std() / n**0.5).item(), "n": n},
            "ssim": {"value": ssim.mean().item(), "std": (ssim.std() / n**0.5).item(), "n": n}}


@torch.no_grad()
def restore(model, evaluator, count, sampler=None, steps=None, seed=0, split="test", data_root=None, batch_size=500):
    """{"degraded" | "direct" | "sampled": metrics} and the first images of each, for a figure."""
    _, sampler_obj = model.sampler(sampler)
    d, net = model.degradation, model.network
    steps = steps or sampler_obj.default_steps(d)
    originals = load_images(model.config.dataset, split, data_root)[:count]
    outputs = {"degraded": [], "direct": [], "sampled": []}
    for index, chunk in enumerate(originals.split(batch_size)):
        g = torch.Generator().manual_seed(seed * 1_000_003 + index)
        x0 = to_model_range(chunk)
        params = d.draw_params(len(x0), g)
        t = torch.full((len(x0),), d.T, dtype=torch.long)
        x_T = d.degrade(x0, t, g, params=params)
        outputs["degraded"].append(to_uint8(x_T))
        outputs["direct"].append(to_uint8(d.predict_x0(net, x_T, t)))
        outputs["sampled"].append(to_uint8(sampler_obj.sample(net, d, x_T, steps, g, params=params)))
    result = {}
    for kind, parts in outputs.items():
        images = torch.cat(parts)
        result[kind] = {**restoration_metrics(images, originals),
                        "fid": evaluator.fid(images, seed),
                        "images": images[:8]}
    return result, {"sampler": sampler or model.config.sampler, "steps": steps, "n": len(originals), "split": split}
