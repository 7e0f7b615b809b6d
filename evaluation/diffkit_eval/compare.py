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

import hashlib
import json
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from rich.markup import escape

from diffkit import distributed
from diffkit.checkpoint import has_checkpoint, load_checkpoint
from diffkit.config import RunConfig, merge, preset
from diffkit.device import resolve_device
from diffkit.errors import DiffkitError
from diffkit.generate import load_samples, save_samples
from diffkit.plugins import manager
from diffkit.run import Run, resolve_config
from diffkit.trainer import read_log, train

SETTINGS = {"samples": 10_000, "reference": "test", "seed": 0, "dataset": "mnist", "device": "auto"}
MODEL_KEYS = {"name", "preset", "samplers"}
SAMPLER_KEYS = {"name", "steps", "options"}


@dataclass
class Pair:
    """One (model, sampler, steps, options) to sample and score, resolved against the model's run config."""

    model: str
    sampler: str
    steps: int
    options: dict = field(default_factory=dict)  # as written in the config; {} means the sampler's defaults

    @property
    def label(self):
        return f"{self.model} / {self.sampler}-{self.steps}" + (f" {self.options}" if self.options else "")

    @property
    def slug(self):
        """File-name stem, unique per pair: options, when given, add a hash of themselves."""
        tag = hashlib.sha256(json.dumps(self.options, sort_keys=True).encode()).hexdigest()[:8] if self.options else ""
        return f"{self.model}__{self.sampler}-{self.steps}" + (f"-{tag}" if tag else "")


def _need(condition, message):
    if not condition:
        raise DiffkitError(message)


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _check_settings(path, settings):
    unknown = sorted(set(settings) - set(SETTINGS))
    _need(not unknown, f"{path}: unknown [compare] key {unknown[0] if unknown else ''!r}; known: {', '.join(SETTINGS)}")
    _need(_is_int(settings["samples"]) and 10 <= settings["samples"] <= 1_000_000,
          f"{path}: samples must be an integer between 10 and 1,000,000")
    _need(_is_int(settings["seed"]) and 0 <= settings["seed"] < 2**32, f"{path}: seed must be an integer in 0..{2**32 - 1}")
    _need(settings["reference"] in ("test", "train"), f"{path}: reference must be \"test\" or \"train\"")
    _need(isinstance(settings["dataset"], str) and isinstance(settings["device"], str),
          f"{path}: dataset and device must be strings")


def _pairs(path, name, entry, config):
    """The model's pairs, each planned against a fresh build of its config: an unknown sampler, a bad option
    or too many steps fails here, before anything trains."""
    samplers = entry.get("samplers", [{}])
    _need(isinstance(samplers, list) and all(isinstance(s, dict) for s in samplers),
          f"{path}: model {name!r}: samplers must be a list of tables like {{ name = \"ddim\", steps = [10, 50] }}")
    run = Run.build(config)
    pairs = []
    for s in samplers:
        unknown = sorted(set(s) - SAMPLER_KEYS)
        _need(not unknown, f"{path}: model {name!r}: unknown sampler key {unknown[0] if unknown else ''!r}")
        sampler, options, steps = s.get("name"), s.get("options", {}), s.get("steps")
        _need(sampler is None or isinstance(sampler, str), f"{path}: model {name!r}: a sampler name must be a string")
        _need(isinstance(options, dict), f"{path}: model {name!r}: sampler options must be a table")
        for step in steps if isinstance(steps, list) else [steps]:
            _need(step is None or _is_int(step), f"{path}: model {name!r}: sampler steps must be integers, got {step!r}")
            plan = run.plan(sampler, dict(options) if options else None, step)
            pairs.append(Pair(name, plan.name, plan.steps, dict(options)))
    return pairs


def read_config(path):
    """(settings, {model name: resolved RunConfig}, [Pair]) from a comparison TOML file, all checked."""
    try:
        raw = tomllib.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise DiffkitError(f"cannot read comparison config {path}: {exc}") from None
    unknown = sorted(set(raw) - {"compare", "models"})
    _need(not unknown, f"{path}: unknown section {unknown[0] if unknown else ''!r}; expected [compare] and [[models]]")
    _need(isinstance(raw.get("compare", {}), dict), f"{path}: [compare] must be a table")
    settings = {**SETTINGS, **raw.get("compare", {})}
    _check_settings(path, settings)
    entries = raw.get("models", [])
    _need(isinstance(entries, list) and entries and all(isinstance(e, dict) for e in entries),
          f"{path}: no [[models]] to compare")
    models, pairs = {}, []
    for entry in entries:
        name = entry.get("name")
        _need(isinstance(name, str) and name.replace("-", "").replace("_", "").isalnum() and len(name) <= 64,
              f"{path}: every [[models]] entry needs a name of letters, digits, - and _ (got {name!r})")
        _need(name not in models, f"{path}: model name {name!r} appears twice")
        _need(isinstance(entry.get("preset", ""), str), f"{path}: model {name!r}: preset must be a string")
        base = preset(entry["preset"]) if "preset" in entry else {}
        values = merge(base, {k: v for k, v in entry.items() if k not in MODEL_KEYS})
        values.setdefault("dataset", settings["dataset"])
        try:
            models[name] = resolve_config(RunConfig.from_dict(values))
        except DiffkitError as exc:
            raise DiffkitError(f"{path}: model {name!r}: {exc.message}") from None
        pairs += _pairs(path, name, entry, models[name])
    seen = {}
    for pair in pairs:
        key = (pair.model, pair.sampler, pair.steps, json.dumps(pair.options, sort_keys=True))
        _need(key not in seen, f"{path}: model {pair.model!r} lists {pair.sampler}-{pair.steps} twice with the same options")
        seen[key] = pair
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
            console.print(f"[dim]reusing {escape(str(run_dir))} ({state['step']} steps)")
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
    resolve_device(device)  # an unknown or absent device fails before anything trains
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
        manager().hook.log_metrics(run_dir=out_dir / "runs" / pair.model, step=meta["training_step"], metrics={
            f"eval/{pair.slug.split('__', 1)[1]}/{key}": entry["value"]
            for key, entry in score["metrics"].items() if isinstance(entry, dict) and "value" in entry})
        console.print(f"scored {pair.label}: FID {score['metrics']['fid']['value']:.2f}")
    from torch_fidelity.metric_fid import fid_features_to_statistics

    stats = [fid_features_to_statistics(r["features"]["features"].double()) for r in results]
    matrix = [[fid(a["features"]["features"].double(), s) for s in stats] for a in results]
    return {"settings": settings, "models": {k: v.to_dict() for k, v in models.items()}, "results": results,
            "fid_matrix": matrix, "out_dir": out_dir, "extractor": results[0]["score"]["extractor"] if results else {}}


def log_of(run_dir):
    return read_log(Path(run_dir) / "log.jsonl")
