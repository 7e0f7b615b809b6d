"""One object for a run's lifecycle: its resolved config, live components, device, sampling plans, seeds.

`resolve_config` turns what a user wrote into the complete config a run records (pure: it returns a new
config); `Run.build` makes fresh components from it and `Run.load` rebuilds a trained run from its
directory alone; `Run.plan` decides once which sampler, options and steps a sampling request means.
"""

import dataclasses
import functools
import hashlib
import inspect
import json
import platform
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from diffkit import __version__, distributed, draws
from diffkit.checkpoint import load_checkpoint, sampling_sha256, unpack
from diffkit.config import RunConfig, merge, preset as load_preset
from diffkit.device import AutocastNetwork, resolve_device, resolve_precision
from diffkit.errors import DiffkitError
from diffkit.options import options_dict, parse_options, split_assignments
from diffkit.plugins import get_component, provenance, source_sha256

DATASET_SHAPES = {"mnist": (1, 28), "fashion-mnist": (1, 28)}
DATASET_CLASSES = {"mnist": 10, "fashion-mnist": 10}
ROLES = {"degradation": "degradations", "network": "networks", "sampler": "samplers"}


def build_degradation(name, options, shape=(1, 28)):
    """The degradation, checked cheaply on a batch of 2 blank images of `shape` (channels, size): a
    `degrade_mean` that raises or changes the image's shape is one line naming the plugin, before anything
    trains or draws on it (diffkit.testing.check_degradation checks the whole contract)."""
    component = get_component("degradations", name)
    degradation = component.cls(parse_options(component.cls.Options, options, f"degradation {name!r}"))
    x0, where = torch.zeros(2, shape[0], shape[1], shape[1]), f"plugin {component.plugin!r}: {component.cls.__name__}.degrade_mean"
    for t in (0, degradation.T):
        try:
            params = degradation.draw_params(2, torch.Generator().manual_seed(0))
            out = degradation.degrade_mean(x0, torch.full((2,), t, dtype=torch.long), params)
        except Exception as exc:  # noqa: BLE001 - whatever a plugin raises is the finding
            raise DiffkitError(f"{where} raised {type(exc).__name__} on a batch {tuple(x0.shape)} at t = {t}: "
                               f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}") from None
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != tuple(x0.shape):
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise DiffkitError(f"{where} returned {got} for a batch {tuple(x0.shape)} at t = {t}; it must return a "
                               f"tensor of x0's shape")
    return component, degradation


def network_options(name, options, classes=0):
    """(component, parsed options) of a network, checked: a conditional run (`classes` > 0) needs a constructor
    that takes `classes`."""
    component = get_component("networks", name)
    parsed = parse_options(component.cls.Options, options, f"network {name!r}")
    if classes and "classes" not in inspect.signature(component.cls.__init__).parameters:
        raise DiffkitError(f"network {name!r} cannot be class-conditional (its constructor takes no `classes`); "
                           f"train it without --conditional or choose cnn or unet")
    return component, parsed


def build_network(name, options, channels, image_size, classes=0):
    """The network; `classes` > 0 makes it class-conditional."""
    component, parsed = network_options(name, options, classes)
    try:
        return component, component.cls(parsed, channels, image_size, **({"classes": classes} if classes else {}))
    except ValueError as exc:
        raise DiffkitError(f"network {name!r}: {exc}") from None


def build_sampler(name, options, degradation, degradation_name):
    component = get_component("samplers", name)
    sampler = component.cls(parse_options(component.cls.Options, options, f"sampler {name!r}"))
    if not sampler.supports(degradation):
        raise DiffkitError(f"sampler {name!r} does not support degradation {degradation_name!r}")
    return component, sampler


def route_options(config, options):
    """A copy of config with each option {key: value} put into the options of the component whose schema
    has `key`; `degradation.key`, `network.key` or `sampler.key` names the component explicitly."""
    config = dataclasses.replace(config, **{f"{role}_options": dict(getattr(config, f"{role}_options")) for role in ROLES})
    names = {"degradation": config.degradation, "network": config.network,
             "sampler": config.sampler or get_component("degradations", config.degradation).cls.default_sampler}
    for key, value in options.items():
        prefix, _, bare = key.partition(".")
        if bare and prefix in ROLES:
            getattr(config, f"{prefix}_options")[bare] = value
            continue
        owners = [role for role, kind in ROLES.items()
                  if key in get_component(kind, names[role]).cls.Options.__dataclass_fields__]
        if not owners:
            raise DiffkitError(f"unknown option {key!r} for degradation {config.degradation!r}, network "
                               f"{config.network!r} and sampler {names['sampler']!r} (see `diffkit list`)")
        if len(owners) > 1:
            raise DiffkitError(f"option {key!r} is ambiguous: write {' or '.join(f'{o}.{key}' for o in owners)}")
        getattr(config, f"{owners[0]}_options")[key] = value
    return config


def make_config(preset=None, options=None, **values):
    """A RunConfig from a preset, explicit values (None: not given) and component options, routed by name.

    `options` is {key: value} or a list of "KEY=VALUE" strings, as `-o` gives them."""
    if isinstance(options, (list, tuple)):
        options = split_assignments(options)
    config = RunConfig.from_dict(merge(load_preset(preset) if preset else {}, values))
    return resolve_config(route_options(config, options or {}))


def _components(config, build=True):
    """The run's degradation, network and sampler; with build=False the network's parsed options stand in for
    the network, whose construction (its weights) only a Run needs."""
    if config.dataset not in DATASET_SHAPES:
        raise DiffkitError(f"unknown dataset {config.dataset!r}; known datasets: {', '.join(DATASET_SHAPES)}")
    channels, size = DATASET_SHAPES[config.dataset]
    d_component, degradation = build_degradation(config.degradation, config.degradation_options, (channels, size))
    sampler_name, sampler_options = config.sampler, config.sampler_options
    if sampler_name is None:  # the degradation's own default sampler, with its default options
        sampler_name = degradation.default_sampler
        sampler_options = {**degradation.default_sampler_options, **sampler_options}
    classes = DATASET_CLASSES[config.dataset] if config.conditional else 0
    n_component, network = (build_network(config.network, config.network_options, channels, size, classes) if build
                            else network_options(config.network, config.network_options, classes))
    _, sampler = build_sampler(sampler_name, sampler_options, degradation, config.degradation)
    return (d_component, degradation), (n_component, network), (sampler_name, sampler)


def resolve_config(config):
    """The complete config a run records: the default sampler chosen and every component option typed and
    filled in with its default. Checks everything; returns a new RunConfig and leaves `config` alone."""
    (_, degradation), (_, network), (sampler_name, sampler) = _components(config, build=False)
    return dataclasses.replace(config, sampler=sampler_name, degradation_options=options_dict(degradation.options),
                               network_options=options_dict(network),
                               sampler_options=options_dict(sampler.options))


@dataclass
class Plan:
    """What one sampling request means: the sampler, its steps and network evaluations per image."""

    component: object
    sampler: object
    steps: int
    nfe: int  # network evaluations per image: a guided step costs two
    jumps: int  # the distinct jumps the steps make: a spacing that merges integer timesteps makes fewer
    guidance: float = 0.0  # classifier-free guidance scale w (conditional runs; 0: the conditional model alone)

    @property
    def name(self):
        return self.component.name


class Run:
    """A model on a device: the degradation with its fitted prior and the (EMA) network.

    `precision` is the autocast precision of network calls; `network` is the bare module (its weights
    are what a checkpoint holds), `model` the same network called under that precision."""

    def __init__(self, config, device, precision="fp32"):
        """The components of a resolved `config` on `device` (a torch.device) with `precision` fp32|bf16|fp16:
        what `build`, `load` and the trainer resolve once, at their edge."""
        self.config, self.device, self.precision = config, device, precision
        (self._d_component, self.degradation), (self._n_component, self.network), _ = _components(config)
        self.step, self.state, self.run_dir = 0, {}, None
        self.weights_sha256 = None  # of the loaded EMA weights and prior: what decides a seed's samples
        self.network.to(self.device)

    @classmethod
    def build(cls, config, device="cpu", precision="fp32"):
        """Fresh components (weights at initialisation) for a config, resolved first."""
        device = resolve_device(device)
        return cls(resolve_config(config), device, resolve_precision(precision, device))

    @classmethod
    def load(cls, run_dir, device="auto", precision="fp32", step=None):
        """A trained run rebuilt from its directory alone, with EMA weights, on `device`: its newest checkpoint,
        or the one of `step` (kept by keep_steps).

        Sampling defaults to fp32 whatever the device, so a seed's samples match across devices."""
        tensors, state = load_checkpoint(run_dir, step=step)
        try:
            config = RunConfig.from_dict(state["config"])
        except DiffkitError as exc:
            written = (state.get("versions") or {}).get("diffkit", "an unknown version")
            raise DiffkitError(f"{run_dir} was written by diffkit {written} (this is {__version__}) and its config "
                               f"does not load here: {exc.message}") from None
        device = resolve_device(device)
        run = cls(config, device, resolve_precision(precision, device))
        parts = unpack(tensors)
        ema, prior = parts["ema"], parts["prior"]
        if not all(torch.isfinite(v).all() for v in ema.values() if v.is_floating_point()):
            raise DiffkitError(f"the checkpoint in {run_dir} holds non-finite weights (the run diverged); "
                               f"train it again with a lower --lr")
        try:
            run.network.load_state_dict(ema)
        except RuntimeError as exc:
            raise DiffkitError(f"checkpoint in {run_dir} does not match its network: {str(exc).splitlines()[0]}") from None
        run.network.eval()
        try:
            run.degradation.load_prior_state(prior)
        except (KeyError, ValueError, RuntimeError) as exc:
            raise DiffkitError(f"the checkpoint in {run_dir} holds no usable prior ({exc}); was it edited, or written "
                               f"before the prior was fitted?") from None
        run.step, run.state, run.run_dir = state["step"], state, Path(run_dir)
        run.weights_sha256 = sampling_sha256(ema, prior)
        return run

    @property
    def model(self):
        """The network as samplers and losses call it: under autocast, returning float32."""
        return AutocastNetwork(self.network, self.device, self.precision)

    def plan(self, sampler=None, options=None, steps=None, guidance=0.0):
        """Resolve a sampling request once: the run's own sampler (with its options and steps) unless another
        is named; a sampler's default steps unless given; checked against the degradation's T; guidance only
        for a conditional run."""
        if isinstance(guidance, bool) or not isinstance(guidance, (int, float)) or not 0 <= guidance <= 100:
            raise DiffkitError(f"--guidance must be a number in 0..100 (0: no guidance), got {guidance!r}")
        if guidance and not self.config.conditional:
            raise DiffkitError("--guidance needs a class-conditional run; this one was trained without --conditional")
        name = sampler or self.config.sampler
        own = name == self.config.sampler
        if options is None:  # the run's own options belong to the run's own sampler only
            options = self.config.sampler_options if own else {}
        component, sampler_obj = build_sampler(name, options, self.degradation, self.config.degradation)
        if steps is None:
            steps = (own and self.config.sample_steps) or sampler_obj.default_steps(self.degradation)
        if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= self.degradation.T:
            raise DiffkitError(f"--steps must be between 1 and T={self.degradation.T}, got {steps}")
        steps = sampler_obj.fixed_steps or steps
        jumps = len(sampler_obj.timesteps(self.degradation, steps)) - 1
        nfe = sampler_obj.nfe(self.degradation, steps) * (2 if guidance else 1)
        return Plan(component, sampler_obj, steps, nfe, jumps, float(guidance))

    def labels(self, n, classes=None):
        """The class each of n images is asked to be: None for an unconditional run; for a conditional one,
        classes "all" (the default: balanced, in order, so a grid of n/10 columns has one digit per row), one
        class, a list of classes (balanced over them) or "none" (the null label: unconditional samples)."""
        if not self.config.conditional:
            if classes is not None:
                raise DiffkitError("--class/--classes need a class-conditional run; this one was trained without "
                                   "--conditional")
            return None
        count = self.network.classes
        if classes is None or classes == "all":
            chosen = list(range(count))
        elif classes == "none":
            chosen = [count]
        else:
            chosen = parse_classes(classes, count, self.config.dataset)
        return torch.tensor(chosen)[(torch.arange(n) * len(chosen)) // n]

    @staticmethod
    def generator(seed, index):
        """The CPU generator of batch `index` of a request seeded `seed` (training steps use the same formula)."""
        return draws.seeded(seed, index)

    def sample(self, n, sampler=None, options=None, steps=None, seed=0, batch_size=256, trajectory=0, console=None,
               classes=None, guidance=0.0, plan=None, batches=None):
        """n samples (from prior draws only) as `Samples`: uint8 images, meta, labels, and the reverse path of the
        first `trajectory` images. `plan` (from `plan`) stands for sampler, options, steps and guidance. `batches`, a
        folder, keeps each finished batch (`BatchStore`): the same request after an interruption draws only the rest.

        A conditional run draws `classes` (see `labels`; default all ten, balanced) with guidance scale w. Batch i
        draws from the generator of (seed, i) alone, so under torchrun each rank samples every world_size-th batch
        and the gathered result is the same, bit for bit, as one process's."""
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        from diffkit.samples import MAX_BATCH, BatchStore, Samples, check_count, class_counts

        check_count(n)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or not 1 <= batch_size <= MAX_BATCH:
            raise DiffkitError(f"--batch-size must be a positive integer up to {MAX_BATCH:,}, got {batch_size!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
            raise DiffkitError(f"--seed must be an integer in 0..{2**32 - 1}, got {seed!r}")
        plan, labels = plan or self.plan(sampler, options, steps, guidance), self.labels(n, classes)
        if plan.guidance and labels is not None and bool((labels == self.network.classes).all()):
            raise DiffkitError("--guidance needs classes to guide towards; --classes none draws unconditionally")
        shape = (self.network.channels, self.network.image_size, self.network.image_size)
        starts = list(range(0, n, batch_size))
        sizes = [min(batch_size, n - i) for i in starts]
        mine = list(range(distributed.rank(), len(sizes), distributed.world_size()))
        done, seconds, path = {}, {}, None
        store = None if batches is None else BatchStore(batches, self._request_key(plan, n, seed, batch_size, labels,
                                                                                   trajectory))
        resumed = 0 if store is None else store.done()
        if resumed and console is not None and distributed.is_main():
            console.print(f"[dim]resuming: {resumed} of {len(sizes)} batches already drawn")
        columns = (TextColumn(f"[bold]sample[/] {plan.name}×{plan.steps}"), BarColumn(), MofNCompleteColumn(),
                   TimeRemainingColumn())
        with Progress(*columns, console=console, disable=not distributed.is_main()) as progress:
            task = progress.add_task("sample", total=len(mine) * plan.jumps)  # on_step comes once a jump
            for index in mine:
                stored = None if store is None else store.get(index)
                if stored is not None:
                    done[index], batch_path, seconds[index] = stored
                    progress.advance(task, plan.jumps)
                else:
                    tick = time.perf_counter()
                    batch_labels = None if labels is None else labels[starts[index]:starts[index] + sizes[index]]
                    done[index], batch_path = self._sample_batch(plan, index, sizes[index], shape, seed, batch_labels,
                                                                 trajectory, lambda: progress.advance(task))
                    seconds[index] = time.perf_counter() - tick
                    if store is not None:
                        store.put(index, done[index], batch_path, seconds[index])
                path = batch_path or path
        for part in distributed.gather(done):
            done.update(part)
        for part in distributed.gather(seconds):
            seconds.update(part)
        path = distributed.gather(path)[0]  # batch 0 is rank 0's
        meta = {
            "n": n, "seed": seed, "batch_size": batch_size,
            "seconds": sum(seconds.values()) / distributed.world_size(),  # resumed batches: as long as they took
            "sampler": plan.name, "sampler_options": plan.sampler.options.__dict__,
            "steps": plan.steps, "jumps": plan.jumps, "nfe": plan.nfe,
            **({"classes": class_counts(labels, self.network.classes), "guidance": plan.guidance}
               if labels is not None else {}),
            "device": str(self.device), "precision": self.precision, "world_size": distributed.world_size(),
            "training_step": self.step, "weights_sha256": self.weights_sha256, "config": self.config.to_dict(),
            "versions": self.versions(plan.component),
        }
        return Samples(torch.cat([done[i] for i in range(len(sizes))]), meta, path, labels)

    def _request_key(self, plan, n, seed, batch_size, labels, trajectory):
        """What decides a request's batches, hashed: the weights, the sampler and its settings, N, seed, batch size,
        the classes asked for and the code (a BatchStore of another key is emptied)."""
        request = {"weights": self.weights_sha256, "sampler": plan.name, "options": plan.sampler.options.__dict__,
                   "steps": plan.steps, "guidance": plan.guidance, "n": n, "seed": seed, "batch_size": batch_size,
                   "labels": None if labels is None else hashlib.sha256(labels.numpy().tobytes()).hexdigest(),
                   "trajectory": trajectory,
                   "code": self.code(plan.component)}
        return hashlib.sha256(json.dumps(request, sort_keys=True, default=str).encode()).hexdigest()

    def _sample_batch(self, plan, index, size, shape, seed, labels, trajectory, on_step):
        """Batch `index`: uint8 images on the CPU, and the reverse path of its first `trajectory` images when it
        is batch 0 (else None)."""
        from diffkit.data import to_uint8  # torchvision: imported when a command samples, not at start-up
        from diffkit.degradation import labels_for
        from diffkit.denoiser import Denoiser

        generator = self.generator(seed, index)
        prior = self.degradation.sample_prior
        x_T = prior(size, shape, generator, **labels_for(prior, labels)).to(self.device)
        params = draws.to_device(self.degradation.draw_params(size, generator), self.device)
        traced = trajectory if index == 0 else 0
        denoiser = Denoiser(self.model, self.degradation, None if labels is None else labels.to(self.device),
                            plan.guidance, self.network.classes)
        result = plan.sampler.sample(denoiser, x_T, plan.steps, generator, trajectory=traced, on_step=on_step,
                                     params=params)
        result, path = result if traced else (result, None)
        if not torch.isfinite(result).all():
            raise DiffkitError(f"sampler {plan.name!r} produced non-finite images in batch {index}: the network or "
                               f"the sampler diverged; try another sampler or more --steps")
        return to_uint8(result).cpu(), None if path is None else [to_uint8(x).cpu() for x in path]

    def code(self, *extra):
        """The code that decides this run's outputs: diffkit's version and source hash, and each component's
        distribution, version and source hash (see `Component.code`); part of every samples cache key."""
        return {"diffkit": f"{__version__} source {source_sha256('diffkit')[:12]}",
                **provenance(self._d_component, self._n_component, *extra)}

    def versions(self, *extra):
        """What made an output, for its record: `code` and the environment (torch, Python, platform, commit)."""
        return {**self.code(*extra), **environment()}


def parse_classes(classes, count, dataset):
    """A list of class indices from an int, a list of ints or a string "7" / "3,7"; one line for anything else."""
    values = classes if isinstance(classes, (list, tuple)) else str(classes).split(",")
    chosen = []
    for value in values:
        try:
            if isinstance(value, bool) or isinstance(value, float):
                raise ValueError
            chosen.append(int(str(value).strip()))
        except ValueError:
            raise DiffkitError(f"--class must be class numbers like 7 or 3,7 (or all, none), got {classes!r}") from None
    bad = [c for c in chosen if not 0 <= c < count]
    if bad or not chosen:
        raise DiffkitError(f"class {bad[0] if bad else classes!r} is not a class of {dataset}: use 0..{count - 1}")
    return chosen


@functools.lru_cache(maxsize=1)
def environment():
    """torch, Python and platform versions, and diffkit's git commit when it runs from a checkout."""
    found = {"torch": torch.__version__, "python": platform.python_version(), "platform": platform.platform()}
    try:
        here = Path(__file__).resolve()
        out = subprocess.run(["git", "-C", str(here.parent), "rev-parse", "--show-toplevel", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=5).stdout.split()
        if len(out) == 2 and Path(out[0], "diffkit", here.name).resolve() == here:  # diffkit's own checkout
            found["diffkit_commit"] = out[1]
    except (OSError, subprocess.SubprocessError):
        pass
    return found
