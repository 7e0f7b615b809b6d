"""`diffkit compare`: train what is missing, sample every (model × sampler × steps) pair the same way,
score each against the reference, and compare the pairs with each other.

Config (TOML):
    [compare]                      # all optional
    samples = 10000                # N per pair
    reference = "test"
    seed = 0                       # the sampling seed, the same for every pair
    seeds = [0, 1, 2]              # training seeds: each model is trained once per seed (default: its own seed)
    budgets = [1400, 2800, 5600]   # training steps to score each model at, from checkpoints of one training
    dataset = "mnist"
    device = "auto"                # where training, sampling and scoring run (--device overrides it)
    features = ["classifier", "autoencoder"]   # the feature spaces: the first gives every metric, a second a FID
    space_options = { inception-v3 = { weights = "pt_inception.pth" } }   # options of the feature spaces

    [[models]]
    name = "ddpm"                  # the run lives in REPORT_DIR/runs/<name>, other seeds in <name>-seed<k>
    preset = "coursework"          # optional; any RunConfig key overrides it
    seeds = [0, 1]                 # optional, this model's training seeds
    budgets = [700, 1400]          # optional, this model's budgets (its steps become the largest)
    steps = 2000
    degradation_options = { T = 1000 }
    samplers = [{ name = "ddpm" }, { name = "ddim", steps = [10, 50], options = { eta = 0.0 } }]
    conditional = true             # a class-conditional model draws every class, balanced; then a sampler may
                                   # take guidance = [0, 1, 2] (one pair per scale w, scored per class too)

    [[samples]]                    # images made elsewhere, scored and compared like the pairs
    name = "ddpm-pytorch"
    path = "external/ddpm-pytorch" # a folder of PNG/JPEG files or an .npy/.npz array, relative to this file
    range = "0,1"                  # optional: the pixel range of a float array that cannot tell

Nothing is recomputed that was made from the same inputs: samples are reused when they were saved under the
hash of their sampling cell (diffkit_eval.cells: the run's training settings, steps and plugin versions, the
budget, the sampler, its options and steps, the seed, N and the source hashes of diffkit and the sampler's
plugin); features and scores are cached under a hash of the images, the versions of the feature spaces and the
scoring code. An edited plugin therefore resamples the pairs that use it, and only those; the console and each
pair's page say what was reused.

How the work is split into cells, run by an executor and resumed is in diffkit_eval.cells.
"""

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from rich.markup import escape

from diffkit import distributed
from diffkit.checkpoint import has_checkpoint, load_checkpoint
from diffkit.config import RunConfig, read_toml
from diffkit.errors import DiffkitError
from diffkit.samples import batches_folder, discard_batches, load_samples, save_samples
from diffkit.images import save_grid
from diffkit.plugins import get_component, provenance
from diffkit.run import Run, make_config, resolve_config
from diffkit.trainer import read_log, train
from diffkit_eval.evaluate import DEFAULT_FEATURES, parse_features, space_class
from diffkit_eval.inputs import parse_range, read_images
from diffkit_eval.metrics import MIN_SAMPLES, fid, fid_statistics

SETTINGS = {"samples": 10_000, "reference": "test", "seed": 0, "seeds": None, "budgets": None, "dataset": "mnist",
            "device": "auto", "features": list(DEFAULT_FEATURES), "space_options": {}}
MODEL_KEYS = {"name", "preset", "samplers", "seeds", "budgets"}
IMPORTED_KEYS = {"name", "path", "range"}
SAMPLER_KEYS = {"name", "steps", "options", "guidance"}


@dataclass
class Pair:
    """One (model, sampler, steps, options) to sample and score, resolved against the model's run config."""

    model: str
    sampler: str
    steps: int
    options: dict = field(default_factory=dict)  # as written in the config; {} means the sampler's defaults

    runs: list = field(default_factory=list)  # (training seed, run name), one per seed
    source: Path | None = None  # an imported set's folder or array file ([[samples]]), scored as it is
    value_range: str | None = None  # its pixel range, when it is a float array that cannot tell
    guidance: float | None = None  # a conditional model's guidance scale w; None for an unconditional one
    budget: int | None = None  # the training step whose checkpoint samples (budget curves); None: the last

    @property
    def options_text(self):
        return ", ".join(f"{k}={v}" for k, v in sorted(self.options.items()))

    @property
    def label(self):
        """How every table, figure and page names the pair."""
        if self.source is not None:
            return f"{self.model} (imported)"
        guided = "" if self.guidance is None else f" w={self.guidance:g}"
        budget = "" if self.budget is None else f" @{self.budget}"
        return (f"{self.model}{budget} / {self.sampler}-{self.steps}{guided}"
                + (f" ({self.options_text})" if self.options else ""))

    def slug(self, run=None):
        """File-name stem of the pair (of one seed's run, when given): options, when given, add a hash of themselves."""
        tag = hashlib.sha256(json.dumps(self.options, sort_keys=True).encode()).hexdigest()[:8] if self.options else ""
        guided = "" if self.guidance is None else f"-w{self.guidance:g}"
        budget = "" if self.budget is None else f"@{self.budget}"
        return f"{run or self.model}{budget}__{self.sampler}-{self.steps}{guided}" + (f"-{tag}" if tag else "")


def run_name(model, seed, own_seed):
    """The run directory's name: the model's own seed keeps the model's name, so adding seeds reuses it."""
    return model if seed == own_seed else f"{model}-seed{seed}"


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
    if settings["seeds"] is not None:
        _check_seeds(path, "[compare]", settings["seeds"])
    if settings["budgets"] is not None:
        _check_budgets(path, "[compare]", settings["budgets"])
    try:
        settings["features"] = list(parse_features(settings["features"]))
    except DiffkitError as exc:
        raise DiffkitError(f"{path}: [compare] features: {exc.message}") from None
    _need(isinstance(settings["space_options"], dict) and all(isinstance(v, dict) for v in settings["space_options"].values()),
          f"{path}: [compare] space_options must be a table of tables, like space_options = "
          f"{{ inception-v3 = {{ weights = \"w.pth\" }} }}")
    try:  # an unknown space or option fails here, not after the training
        for name in [*settings["features"], *settings["space_options"]]:
            space_class(name, settings["dataset"], settings["space_options"].get(name))
    except DiffkitError as exc:
        raise DiffkitError(f"{path}: [compare] {exc.message}") from None


def _check_seeds(path, where, seeds):
    _need(isinstance(seeds, list) and seeds and all(_is_int(s) and 0 <= s < 2**32 for s in seeds)
          and len(set(seeds)) == len(seeds), f"{path}: {where} seeds must be a list of distinct integers in "
          f"0..{2**32 - 1}, like seeds = [0, 1, 2]")


def _check_budgets(path, where, budgets):
    _need(isinstance(budgets, list) and budgets and all(_is_int(b) and 1 <= b <= 10**9 for b in budgets)
          and len(set(budgets)) == len(budgets), f"{path}: {where} budgets must be a list of distinct positive step "
          f"counts, like budgets = [1400, 2800, 5600]")


def _pairs(path, name, entry, config, runs):
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
        guidance = s.get("guidance", 0.0 if config.conditional else None)
        _need(sampler is None or isinstance(sampler, str), f"{path}: model {name!r}: a sampler name must be a string")
        _need(isinstance(options, dict), f"{path}: model {name!r}: sampler options must be a table")
        _need(guidance is None or config.conditional, f"{path}: model {name!r}: guidance needs conditional = true")
        for step in steps if isinstance(steps, list) else [steps]:
            _need(step is None or _is_int(step), f"{path}: model {name!r}: sampler steps must be integers, got {step!r}")
            for scale in guidance if isinstance(guidance, list) else [guidance]:
                try:
                    plan = run.plan(sampler, dict(options) if options else None, step, scale or 0.0)
                except DiffkitError as exc:
                    raise DiffkitError(f"{path}: model {name!r}: {exc.message}") from None
                for budget in config.keep_steps or [None]:
                    pairs.append(Pair(name, plan.name, plan.steps, dict(options), runs,
                                      guidance=None if scale is None else plan.guidance, budget=budget))
    return pairs


def _name(path, section, entry):
    """An entry's name, which names its run folders and files: letters, digits, - and _ only."""
    name = entry.get("name")
    _need(isinstance(name, str) and name.replace("-", "").replace("_", "").isalnum() and len(name) <= 64,
          f"{path}: every {section} entry needs a name of letters, digits, - and _ (got {name!r})")
    return name


def _imported(path, entry, taken):
    """A [[samples]] entry: images made elsewhere (another toolkit, a notebook), scored beside the trained pairs."""
    name = _name(path, "[[samples]]", entry)
    _need(name not in taken, f"{path}: the name {name!r} is used twice; [[models]] and [[samples]] names must differ")
    unknown = sorted(set(entry) - IMPORTED_KEYS)
    _need(not unknown, f"{path}: [[samples]] {name!r}: unknown key {unknown[0] if unknown else ''!r}; known: "
                       f"{', '.join(sorted(IMPORTED_KEYS))}")
    _need(isinstance(entry.get("path"), str), f"{path}: [[samples]] {name!r} needs a path (a folder of images or "
                                              f"an .npy/.npz file, relative to the config)")
    source = Path(path).parent / entry["path"]
    _need(source.exists(), f"{path}: [[samples]] {name!r}: {source} does not exist")
    try:
        value_range = parse_range(entry.get("range"))
    except DiffkitError as exc:
        raise DiffkitError(f"{path}: [[samples]] {name!r}: {exc.message}") from None
    return Pair(name, "imported", 0, {}, [(None, name)], source, value_range)


def read_config(path):
    """(settings, {run name: resolved RunConfig}, [Pair]) from a comparison TOML file, all checked: one
    run per model and training seed."""
    raw = read_toml(path, "comparison config")
    unknown = sorted(set(raw) - {"compare", "models", "samples", "executor"})
    _need(not unknown, f"{path}: unknown section {unknown[0] if unknown else ''!r}; expected [compare], [[models]], "
                       f"[[samples]] and [executor]")
    _need(isinstance(raw.get("compare", {}), dict), f"{path}: [compare] must be a table")
    settings = {**SETTINGS, **raw.get("compare", {})}
    _check_settings(path, settings)
    entries, imported = raw.get("models", []), raw.get("samples", [])
    _need(isinstance(entries, list) and all(isinstance(e, dict) for e in entries)
          and isinstance(imported, list) and all(isinstance(e, dict) for e in imported) and (entries or imported),
          f"{path}: no [[models]] or [[samples]] to compare")
    models, runs, pairs = {}, {}, []
    for entry in entries:
        name = _name(path, "[[models]]", entry)
        _need(name not in models, f"{path}: model name {name!r} appears twice")
        _need(isinstance(entry.get("preset", ""), str), f"{path}: model {name!r}: preset must be a string")
        budgets = entry.get("budgets", settings["budgets"])
        if budgets is not None:
            _check_budgets(path, f"model {name!r}:", budgets)
        values = {"dataset": settings["dataset"], **{k: v for k, v in entry.items() if k not in MODEL_KEYS}}
        if budgets:
            values.update(steps=max(budgets), keep_steps=sorted(budgets))
        try:
            models[name] = make_config(entry.get("preset"), **values)
        except DiffkitError as exc:
            raise DiffkitError(f"{path}: model {name!r}: {exc.message}") from None
        seeds = entry.get("seeds", settings["seeds"] or [models[name].seed])
        _check_seeds(path, f"model {name!r}:", seeds)
        named = [(seed, run_name(name, seed, models[name].seed)) for seed in seeds]
        for seed, run in named:
            _need(run not in runs, f"{path}: run name {run!r} is used twice; rename model {name!r}")
            runs[run] = dataclasses.replace(models[name], seed=seed)
        pairs += _pairs(path, name, entry, models[name], named)
    for entry in imported:
        pairs.append(_imported(path, entry, set(models) | {p.model for p in pairs}))
    seen = {}
    for pair in pairs:
        key = (pair.model, pair.sampler, pair.steps, json.dumps(pair.options, sort_keys=True), pair.guidance, pair.budget)
        _need(key not in seen, f"{path}: model {pair.model!r} lists {pair.sampler}-{pair.steps} twice with the same "
                               f"options and guidance")
        seen[key] = pair
    return settings, runs, pairs


NOT_TRAINING = ("steps", "checkpoint_every", "keep_checkpoints", "keep_steps", "log_every", "sampler", "sampler_options", "sample_steps", "precision",
                "compile")


def training_fields(config):
    """What decides a run's weights at a given step: a finished run is reused when these match."""
    return {k: v for k, v in config.to_dict().items() if k not in NOT_TRAINING}


def ensure_trained(name, config, run_dir, data_root, console, device):
    """Reuse a finished run, resume a partial one, or train from scratch (`config` is resolved: `read_config`)."""
    if has_checkpoint(run_dir):
        _, state = load_checkpoint(run_dir)
        saved = resolve_config(RunConfig.from_dict(state["config"]))
        if training_fields(saved) != training_fields(config):
            raise DiffkitError(f"{run_dir} holds a run with another config than model {name!r}; "
                               f"delete it or rename the model")
        if state["step"] >= config.steps:
            console.print(f"[dim]reusing {escape(str(run_dir))} ({state['step']} steps)")
            trained_by = {k: v for k, v in (state.get("versions") or {}).items() if k.startswith(("degradation:", "network:"))}
            now = provenance(get_component("degradations", config.degradation), get_component("networks", config.network))
            changed = sorted(k for k, v in trained_by.items() if k in now and v != now[k] and " source " in v)
            if changed:
                console.print(f"[yellow]Warning: {escape(str(run_dir))} was trained by other code of {', '.join(changed)} "
                              f"({trained_by[changed[0]]}; now {now[changed[0]]}); delete the run to train it again")
            return
        console.print(f"resuming {name} from step {state['step']}")
        train(config, run_dir, resume=True, data_root=data_root, device=device, console=console)
    else:
        console.print(f"training {name}")
        train(config, run_dir, data_root=data_root, device=device, console=console)


def ensure_sampled(pair, run_dir, path, n, seed, console, device, key):
    """(images, meta, labels) of one pair from one run, reused when the file holds samples made under the same
    `key` (its sampling cell's hash); a conditional run draws every class, balanced. Under torchrun every rank samples its share
    of the batches and rank 0 writes the files; the reverse path of the first samples is drawn beside them
    (PATH-path.png)."""
    run = Run.load(run_dir, device, step=pair.budget)
    plan = run.plan(pair.sampler, dict(pair.options) or None, pair.steps, pair.guidance or 0.0)
    if path.exists():
        cached = load_samples(path)
        if cached.meta.get("cache_key") == key and path_strip(path).exists():
            console.print(f"[dim]reusing {escape(str(path))} (the same weights, sampler, seed and code)")
            return cached.images, {**cached.meta, "reused": True}, cached.labels
    distributed.barrier()  # every rank has decided to sample before rank 0 may write the file
    samples = run.sample(n, seed=seed, trajectory=8, console=console, plan=plan, batches=batches_folder(path))
    meta = {**samples.meta, "request": [pair.sampler, pair.steps, pair.options],
            "train_seconds": run.state.get("train_seconds"), "images_seen": run.state.get("images_seen"),
            "cache_key": key}
    if distributed.is_main():
        strip, frames = samples.path_grid()
        save_grid(path_strip(path), strip, nrow=frames)
        save_samples(path, samples.images, meta, samples.labels)
    discard_batches(path)
    return samples.images, meta, samples.labels


def path_strip(samples_path):
    return samples_path.with_name(samples_path.stem + "-path.png")


def reference_rows(evaluator, n, seed):
    """The two ends of the scale, scored like any pair: the floor (real images of the reference split's even-
    numbered half against its odd-numbered half: what a perfect generator scores, the same on every machine) and a copying
    generator (training images with a little pixel noise, so that the memorisation columns must catch near
    copies, not only identical ones). Returns (name, images, info, scored against the floor's reference)."""
    g = torch.Generator().manual_seed(seed)
    floor = evaluator.floor_images(n)
    train = evaluator.train_images
    copies = train[torch.randint(0, len(train), (n,), generator=g)]
    noise = torch.randn(copies.shape, generator=g) * COPY_NOISE
    copies = (copies.float() + noise).round().clamp(0, 255).to(torch.uint8)
    split = f"{evaluator.dataset} {evaluator.split}"
    return [(FLOOR, floor, {"n": len(floor), "what": f"{len(floor):,} even-numbered images of {split} against its "
                                                     f"odd-numbered half"}, True),
            (COPY, copies, {"n": n, "what": f"training images with pixel noise of std {COPY_NOISE} grey levels"}, False)]


FLOOR, COPY = "floor", "copy"
COPY_NOISE = 4.0


def gather(settings, runs, pairs, out_dir, evaluator, failed=(), fresh=(), console=None):
    """What the report needs, from the cells' outputs on disk: each pair's samples and their cached scores
    (scoring again only what no score cell left in the cache). A pair with a failed cell (`failed` holds
    the slugs of the failed (pair, run)s) is left out of the tables; the report lists the failures. Samples
    whose slug is not in `fresh` were made by an earlier command and say so."""
    out_dir, cache = Path(out_dir), Path(out_dir) / "cache"
    n, seed = settings["samples"], settings["seed"]
    results, kept = [], []
    for pair in pairs:
        if any(pair.slug(run) in failed for _, run in pair.runs):
            continue
        kept.append(pair)
        for train_seed, run in pair.runs:
            path = None if pair.source else out_dir / "samples" / f"{pair.slug(run)}.npz"
            if pair.source:
                images, meta, labels = imported_set(pair, *read_images(pair.source, n, pair.value_range))
            else:
                samples = load_samples(path)
                images, labels = samples.images, samples.labels
                meta = {**samples.meta, **({} if pair.slug(run) in fresh else {"reused": True})}
            features, score, curve = evaluator.score_cached(images, meta, seed, cache, console=console, labels=labels)
            results.append({"pair": pair, "train_seed": train_seed, "run": run, "images": images, "features": features,
                            "score": score, "curve": curve, "meta": meta, "labels": labels, "samples_path": path})
    references = []
    for name, images, info, floor in reference_rows(evaluator, n, seed):
        features, score, curve = evaluator.score_cached(images, info, seed, cache, floor=floor, console=console)
        references.append({"name": name, "info": info, "images": images, "features": features, "score": score,
                           "curve": curve})
    stats = [fid_statistics(r["features"]["features"]) for r in results]
    matrix = [[fid(a["features"]["features"], s) for s in stats] for a in results]
    first = results[0]["score"] if results else references[0]["score"]
    return {"settings": settings, "models": {k: v.to_dict() for k, v in runs.items()}, "pairs": kept,
            "results": results, "references": references, "fid_matrix": matrix, "out_dir": out_dir,
            "train_images": evaluator.train_images, "spaces": first.get("spaces", []),
            "classifier": first.get("classifier", {})}


def imported_set(pair, images, meta, labels):
    """(images, meta, labels) of a [[samples]] entry, its meta saying where the images came from."""
    if len(images) < MIN_SAMPLES:
        raise DiffkitError(f"[[samples]] {pair.model!r}: {pair.source} holds {len(images)} images; the metrics need "
                           f"at least {MIN_SAMPLES}")
    return images, {**meta, "n": len(images), "sampler": "imported", "steps": 0, "nfe": None,
                    "source": str(pair.source), "value_range": pair.value_range}, labels


def log_of(run_dir):
    return read_log(Path(run_dir) / "log.jsonl")
