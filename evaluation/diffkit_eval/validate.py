"""`diffkit validate-metrics`: show that each metric moves the way it should, in each feature space.

Real held-out digits (the even-numbered half of the test split, scored against the odd-numbered half, like the
floor) are degraded by each built-in degradation at growing strength t/T: the cold operators without the noise
their generative defaults add (blurred, masked, pixelated, faded digits), and the Gaussian forward process. Worse images must score worse:
FID and KID rise, precision, recall and coverage fall. A collapsed set (one digit repeated) must lose recall
and coverage, and a copy set (training images) must be flagged by the memorisation figures.

A step between two strengths counts as the right way when it goes that way or stays within two combined
standard errors; the strongest level must be worse than the clean images by more than that.
"""

import dataclasses

import torch

from diffkit.data import to_model_range, to_uint8
from diffkit.plugins import get_component
from diffkit.run import build_degradation
from diffkit_eval.evaluate import Evaluator

DEGRADATIONS = ("blur", "gaussian", "mask", "pixelate", "fade")
FRACTIONS = (0.05, 0.2, 0.5, 1.0)
SIGMAS = 2
# metric -> +1 if degrading the images must raise it, -1 if it must lower it
DIRECTIONS = {"fid": 1, "kid": 1, "precision": -1, "recall": -1, "coverage": -1}


def degraded(name, images, seed=0):
    """{t: uint8 images D(x0, t)} at the FRACTIONS of the degradation's T (distinct steps only)."""
    component = get_component("degradations", name)
    pure = {"noise": 0.0} if "noise" in {f.name for f in dataclasses.fields(component.cls.Options)} else {}
    _, degradation = build_degradation(name, pure)
    g = torch.Generator().manual_seed(seed)
    x0 = to_model_range(images)
    params = degradation.draw_params(len(x0), g)
    steps = sorted({max(1, round(f * degradation.T)) for f in FRACTIONS})
    return {t: to_uint8(degradation.degrade(x0, torch.full((len(x0),), t), g, params=params)) for t in steps}


def moves_right(series, key):
    """Whether the series of metric dicts (clean first) moves `key` in its direction, as the module says."""
    sign = DIRECTIONS[key]

    def step_ok(a, b):
        slack = SIGMAS * (a[key].std ** 2 + b[key].std ** 2) ** 0.5
        return sign * (b[key].value - a[key].value) >= -slack

    steps = all(step_ok(a, b) for a, b in zip(series, series[1:]))
    first, last = series[0][key], series[-1][key]
    return steps and sign * (last.value - first.value) > SIGMAS * (first.std ** 2 + last.std ** 2) ** 0.5


def validate_space(space, n, degradations, dataset="mnist", data_root=None, console=None, device="cpu", seed=0):
    """(rows for the table, checks) in one feature space."""
    evaluator = Evaluator(dataset, "test", data_root, console, device, (space,))
    clean = evaluator.floor_images(n)

    def score(images):
        return evaluator.score(images, seed=seed, floor=True)["metrics"]

    base = score(clean)
    rows, checks = [("clean (real test digits)", base)], []
    for name in degradations:
        series = [base]
        for t, images in degraded(name, clean, seed).items():
            series.append(score(images))
            rows.append((f"{name} t = {t}", series[-1]))
        wrong = [key for key in DIRECTIONS if not moves_right(series, key)]
        checks.append({"name": name, "passed": not wrong, "wrong": wrong})
    collapsed = score(clean[:1].expand(len(clean), -1, -1, -1).contiguous())
    rows.append(("collapsed (one digit repeated)", collapsed))
    wrong = [key for key in ("fid", "kid", "recall", "coverage") if not moves_right([base, collapsed], key)]
    checks.append({"name": "collapsed", "passed": not wrong, "wrong": wrong})
    copy = score(evaluator.train_images[:len(clean)])
    rows.append(("copy (training images)", copy))
    flags = {"nn_distance_ratio": copy["nn_distance_ratio"].value < 0.5,
             "authenticity": copy["authenticity"].value < base["authenticity"].value / 2,
             "near_copies": copy["near_copies"].value > 0.5}
    checks.append({"name": "copy", "passed": all(flags.values()), "wrong": [k for k, ok in flags.items() if not ok]})
    return evaluator.spaces[0].version, rows, checks
