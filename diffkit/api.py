"""diffkit from Python, for notebooks and scripts; the `diffkit` command line is a thin layer over it.

    import diffkit
    run = diffkit.train("runs/ddpm", preset="quick", steps=200)     # or diffkit.load("runs/ddpm")
    samples = run.sample(1000, seed=0)                               # Samples: .images uint8, .meta
    scores = diffkit.evaluate(samples)                               # scores["metrics"]["fid"].value, .std, .n
    scores = diffkit.evaluate("samples-from-elsewhere/")              # a folder of PNGs, an .npy or .npz too
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from diffkit.config import RunConfig
from diffkit.errors import DiffkitError
from diffkit.samples import Samples
from diffkit.run import Run, make_config


def train(out: str | Path, *, preset: str | None = None, options: dict | list[str] | None = None,
          resume: bool = False, device: str = "auto", precision: str | None = None, compile: bool = False,
          data_root: str | Path | None = None, console=None, **settings: Any) -> Run:
    """Train a model into the run directory `out` and return it with its EMA weights.

    settings are RunConfig fields (degradation="blur", network="unet", steps=1000, batch_size=64, lr=...,
    seed=...); options are component options such as {"T": 20, "sigma": 0.8} (or ["T=20", ...]), routed
    to the component that has them. resume=True continues `out` from its last checkpoint; then only
    `steps` may be given. Ctrl-C writes a checkpoint and raises `diffkit.errors.Interrupted`."""
    from diffkit.trainer import train as train_loop

    _check_path(out, "out")
    if options is not None and not isinstance(options, (dict, list, tuple)):
        raise DiffkitError(f"options must be a dict like {{\"T\": 20}} or a list like [\"T=20\"], got {options!r}")
    given = {k: v for k, v in settings.items() if v is not None}
    if resume:
        if set(given) - {"steps"} or preset or options:
            raise DiffkitError("--resume continues with the run's saved config; only --steps may be given")
        config = RunConfig(steps=given["steps"]) if "steps" in given else None
    else:
        config = make_config(preset, options, **given)
    return train_loop(config, out, resume, data_root, device, precision, compile, console)


def load(run_dir: str | Path, device: str = "auto", precision: str = "fp32") -> Run:
    """A trained run from its directory alone (EMA weights), ready to `.sample(n)` on `device`."""
    _check_path(run_dir, "run_dir")
    return Run.load(run_dir, device, precision)


def _check_path(value, name):
    if not isinstance(value, (str, Path)) or not str(value):
        raise DiffkitError(f"{name} must be a path (a str or pathlib.Path), got {value!r}")


def evaluate(samples: Samples | torch.Tensor | np.ndarray | str | Path, *, reference: str = "test",
             dataset: str | None = None, n: int | None = None, seed: int = 0, data_root: str | Path | None = None,
             device: str = "auto", features: str | tuple = ("classifier", "autoencoder"),
             value_range: str | None = None, console=None) -> dict:
    """The scorecard (FID, KID, precision/recall, density/coverage and Vendi in the primary feature space, FID
    in the second, class scores, memorisation and authenticity, each an `Estimate` with .value, .std and .n)
    of samples against a real split: a `Samples`, an array or tensor of images (uint8 pixels, or floats with
    value_range "0,1", "0,255" or "-1,1" where the values cannot tell), or a path to an .npz/.npy file or a
    folder of PNG/JPEG images. The evaluation plugin that ships with diffkit does the scoring."""
    from diffkit.plugins import manager

    settings = {"reference": reference, "dataset": dataset, "n": n, "seed": seed, "data_root": data_root,
                "device": device, "features": features, "value_range": value_range, "console": console}
    result = manager().hook.score_samples(samples=samples, settings=settings)
    if result is None:
        raise DiffkitError("diffkit.evaluate needs the evaluation plugin, which is not loaded; "
                           "reinstall diffkit, or add evaluation to DIFFKIT_PLUGINS")
    return result
