"""Restoration of real degraded test images (the cold-diffusion paper's Tables 1–3).

This is not generation: x_T = D(x0, T) comes from real held-out images. It is reported in its own,
clearly labelled table; unconditional samples always start from the fitted prior.
"""

import torch
from torchmetrics.functional.image import structural_similarity_index_measure

from diffkit import draws
from diffkit.data import load_images, to_model_range, to_uint8
from diffkit.denoiser import Denoiser
from diffkit_eval.metrics import estimate


def restoration_metrics(restored, originals):
    """RMSE and SSIM in [0, 1] pixel units, per image then averaged, with standard errors."""
    a, b = restored.float() / 255, originals.float() / 255
    rmse = (a - b).pow(2).mean(dim=(1, 2, 3)).sqrt()
    ssim = structural_similarity_index_measure(a, b, data_range=1.0, reduction="none")
    n = len(a)
    return {"rmse": estimate(rmse.mean(), rmse.std() / n**0.5, n), "ssim": estimate(ssim.mean(), ssim.std() / n**0.5, n)}


@torch.no_grad()
def restore(run, evaluator, count, sampler=None, steps=None, seed=0, split="test", data_root=None, batch_size=500):
    """{"degraded" | "direct" | "sampled": metrics} and the first images of each, for a figure."""
    plan = run.plan(sampler, None, steps)
    d, net = run.degradation, run.model
    originals = load_images(run.config.dataset, split, data_root)[:count]
    outputs = {"degraded": [], "direct": [], "sampled": []}
    for index, chunk in enumerate(originals.split(batch_size)):
        g = run.generator(seed, index)
        x0 = to_model_range(chunk).to(run.device)
        params = draws.to_device(d.draw_params(len(x0), g), run.device)
        t = torch.full((len(x0),), d.T, dtype=torch.long, device=run.device)
        x_T = d.degrade(x0, t, g, params=params)
        outputs["degraded"].append(to_uint8(x_T).cpu())
        outputs["direct"].append(to_uint8(d.predict_x0(net, x_T, t)).cpu())
        outputs["sampled"].append(to_uint8(plan.sampler.sample(Denoiser(net, d), x_T, plan.steps, g, params=params)).cpu())
    result = {}
    for kind, parts in outputs.items():
        images = torch.cat(parts)
        result[kind] = {**restoration_metrics(images, originals),
                        "fid": evaluator.fid(images, seed),
                        "images": images[:8]}
    return result, {"sampler": plan.name, "steps": plan.steps, "n": len(originals), "split": split}
