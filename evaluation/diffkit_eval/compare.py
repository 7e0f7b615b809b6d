"""`diffkit compare`: train what is missing, sample every (model × sampler × steps) pair the same way,
score each against the reference, and compare the pairs with each other.

Config (TOML):
    [compare]                      # all optional
    samples = 10000                # N per pair
    reference = "test"
    seed = 0
    dataset = "mnist"
    device = "auto"                # where training, sampling and scoring run (--device overrides it)

    [[models]]
    name = "ddpm"                  # the run lives in REPORT_DIR/runs/<name>
    preset = "coursework"          # optional; any RunConfig key overrides it
    steps = 2000
    degradation_options = { T = 1000 }
    samplers = [{ name = "ddpm" }, { name = "ddim", steps = [10, 50], options = { eta = 0.0 } }]
"""

import json
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from diffkit import distributed
from diffkit.checkpoint import has_checkpoint, load_checkpoint
from diffkit.config import RunConfig, merge, preset
from diffkit.errors import DiffkitError
from diffkit.generate import load_samples, save_samples
from diffkit.run import Run, resolve_config
from diffkit.trainer import train

SETTINGS = {"samples": 10_000, "reference": "test", "seed": 0, "dataset": "mnist", "device": "auto"}
MODEL_KEYS = {"name", "preset", "samplers"}
SAMPLER_KEYS = {"name", "steps", "options"}


@dataclass
class Pair:
    model: str
    sampler: str
    steps: int | None
    options: dict = field(default_factory=dict)

    @property
    def label(self):
        return f"{self.model} / {self.sampler}" + (f"-{self.steps}" if self.steps else "")

    @property
    def slug(self):
        return f"{self.model}__{self.sampler}" + (f"-{self.steps}" if self.steps else "")


def read_config(path):
    """(settings, {model name: RunConfig}, [Pair]) from a comparison TOML file."""
    try:
        raw = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise DiffkitError(f"cannot read comparison config {path}: {exc}") from None
    unknown = sorted(set(raw) - {"compare", "models"})
    if unknown:
        raise DiffkitError(f"{path}: unknown section {unknown[0]!r}; expected [compare] and [[models]]")
    settings = {**SETTINGS, **raw.get("compare", {})}
    if sorted(set(settings) - set(SETTINGS)):
        raise DiffkitError(f"{path}: unknown [compare] key {sorted(set(settings) - set(SETTINGS))[0]!r}; known: {', '.join(SETTINGS)}")
    if not isinstance(settings["samples"], int) or settings["samples"] < 1:
        raise DiffkitError(f"{path}: samples must be a positive integer")
    models, pairs = {}, []
    for entry in raw.get("models", []):
        name = entry.get("name")
        if not name or not str(name).replace("-", "").replace("_", "").isalnum():
            raise DiffkitError(f"{path}: every [[models]] entry needs a name of letters, digits, - and _")
        if name in models:
            raise DiffkitError(f"{path}: model name {name!r} appears twice")
        base = preset(entry["preset"]) if "preset" in entry else {}
        values = merge(base, {k: v for k, v in entry.items() if k not in MODEL_KEYS})
        values.setdefault("dataset", settings["dataset"])
        models[name] = RunConfig.from_dict(values)
        for s in entry.get("samplers", [{"name": None}]):
            if set(s) - SAMPLER_KEYS:
                raise DiffkitError(f"{path}: model {name!r}: unknown sampler key {sorted(set(s) - SAMPLER_KEYS)[0]!r}")
            step_list = s.get("steps")
            for steps in step_list if isinstance(step_list, list) else [step_list]:
                pairs.append(Pair(name, s.get("name"), steps, dict(s.get("options", {}))))
    if not models:
        raise DiffkitError(f"{path}: no [[models]] to compare")
    return settings, models, pairs


NOT_TRAINING = ("steps", "checkpoint_every", "log_every", "sampler", "sampler_options", "sample_steps", "precision",
                "compile")


def training_fields(config):
    """What decides a run's weights at a given step: a finished run is reused when these match."""
    return {k: v for k, v in config.to_dict().items() if k not in NOT_TRAINING}


def ensure_trained(name, config, run_dir, data_root, console, device):
    """Reuse a finished run, resume a partial one, or train from scratch."""
    config = resolve_config(config)  # the default sampler and every option, checked
    if has_checkpoint(run_dir):
        _, state = load_checkpoint(run_dir)
        saved = resolve_config(RunConfig.from_dict(state["config"]))
        if training_fields(saved) != training_fields(config):
            raise DiffkitError(f"{run_dir} holds a run with another config than model {name!r}; "
                               f"delete it or rename the model")
        if state["step"] >= config.steps:
            console.print(f"[dim]reusing {run_dir} ({state['step']} steps)")
            return
        console.print(f"resuming {name} from step {state['step']}")
        train(config, run_dir, resume=True, data_root=data_root, device=device, console=console)
    else:
        console.print(f"training {name}")
        train(config, run_dir, data_root=data_root, device=device, console=console)


def ensure_sampled(pair, run_dir, path, n, seed, console, device):
    """Samples of one pair, reused when the file already holds the same request. Under torchrun every
    rank samples its share of the batches and rank 0 writes the file."""
    run = Run.load(run_dir, device)
    if path.exists():
        images, meta = load_samples(path)
        if (meta.get("n"), meta.get("seed"), meta.get("training_step")) == (n, seed, run.step) and \
                meta.get("request") == [pair.sampler, pair.steps, pair.options]:
            return images, meta
    distributed.barrier()  # every rank has decided to sample before rank 0 may write the file
    start = time.perf_counter()
    samples = run.sample(n, pair.sampler, pair.options or None, pair.steps, seed, console=console)
    meta = {**samples.meta, "seconds": time.perf_counter() - start, "request": [pair.sampler, pair.steps, pair.options],
            "train_seconds": run.state.get("train_seconds"), "images_seen": run.state.get("images_seen")}
    if distributed.is_main():
        save_samples(path, samples.images, meta)
    return samples.images, meta


def run_comparison(config_path, out_dir, data_root=None, console=None, device=None):
    """Everything `diffkit compare` does; returns what the report needs (None on ranks other than 0,
    which only train and sample)."""
    from diffkit_eval.evaluate import Evaluator
    from diffkit_eval.metrics import fid

    settings, models, pairs = read_config(config_path)
    settings["device"] = device = device or settings["device"]
    out_dir = Path(out_dir)
    for name, config in models.items():
        ensure_trained(name, config, out_dir / "runs" / name, data_root, console, device)
    sampled = [(pair, *ensure_sampled(pair, out_dir / "runs" / pair.model, out_dir / "samples" / f"{pair.slug}.npz",
                                      settings["samples"], settings["seed"], console, device)) for pair in pairs]
    if not distributed.is_main():
        return None
    evaluator = Evaluator(settings["dataset"], settings["reference"], data_root, console, device)
    results = []
    for pair, images, meta in sampled:
        features = evaluator.features(images)
        score = evaluator.score(images, meta, settings["seed"], features)
        results.append({"pair": pair, "images": images, "features": features, "score": score, "meta": meta})
        console.print(f"scored {pair.label}: FID {score['metrics']['fid']['value']:.2f}")
    from torch_fidelity.metric_fid import fid_features_to_statistics

    stats = [fid_features_to_statistics(r["features"]["features"].double()) for r in results]
    matrix = [[fid(a["features"]["features"].double(), s) for s in stats] for a in results]
    return {"settings": settings, "models": {k: v.to_dict() for k, v in models.items()}, "results": results,
            "fid_matrix": matrix, "out_dir": out_dir, "extractor": results[0]["score"]["extractor"] if results else {}}


def log_of(run_dir):
    path = Path(run_dir) / "log.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
