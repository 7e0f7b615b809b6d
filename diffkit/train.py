"""The training loop: Adam, EMA weights, periodic checkpoints, exact resume.

Every random draw of step s comes from a generator seeded by (seed, s), and batches from a
per-epoch permutation seeded by (seed, epoch), so a resumed run replays exactly what an
uninterrupted run would have done without saving any RNG state.
"""

import contextlib
import copy
import json
import signal
import time
from pathlib import Path

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from diffkit.atomic import write_text
from diffkit.checkpoint import (flatten_optimizer, has_checkpoint, load_checkpoint, save_checkpoint,
                                split_prefix, unflatten_optimizer)
from diffkit.config import RunConfig
from diffkit.data import load_images, to_model_range
from diffkit.errors import DiffkitError
from diffkit.model import build_model


def step_generator(seed, step):
    """The generator for all random draws of one training step."""
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


class Batches:
    """Batch `step` of an epoch-wise shuffled dataset, computable for any step."""

    def __init__(self, images, batch_size, seed):
        self.images, self.batch_size, self.seed = images, batch_size, seed
        self.per_epoch = max(1, len(images) // batch_size)
        self._epoch, self._perm = None, None

    def __call__(self, step):
        epoch, index = divmod(step, self.per_epoch)
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(self.seed * 7_919 + epoch)
            self._epoch, self._perm = epoch, torch.randperm(len(self.images), generator=g)
        idx = self._perm[index * self.batch_size:(index + 1) * self.batch_size]
        return self.images[idx]


class Interrupted(Exception):
    """Ctrl-C stopped training; a checkpoint of the last finished step was written."""

    def __init__(self, step):
        super().__init__(f"interrupted at step {step}; checkpoint saved, continue with --resume")
        self.step = step


@contextlib.contextmanager
def deferred_interrupt():
    """Turn Ctrl-C into a flag checked between steps, so the checkpoint is never mid-update."""
    requested = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: requested.append(signum))
    try:
        yield requested
    finally:
        signal.signal(signal.SIGINT, previous)


def learning_rate(config, step):
    if config.warmup_steps and step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    return config.lr


def _checkpoint(run_dir, model, network, ema, optimizer, step, stats):
    opt_tensors, opt_rest = flatten_optimizer(optimizer.state_dict())
    tensors = {
        **{f"network.{k}": v for k, v in network.state_dict().items()},
        **{f"ema.{k}": v for k, v in ema.state_dict().items()},
        **{f"prior.{k}": v for k, v in model.degradation.prior_state().items()},
        **opt_tensors,
    }
    state = {"config": model.config.to_dict(), "seed": model.config.seed, "step": step,
             "versions": model.versions(), "optimizer": opt_rest, **stats}
    save_checkpoint(run_dir, step, tensors, state)


def _trim_log(path, step):
    """Keep the log lines of steps the checkpoint already holds (a resume rewrites the rest)."""
    if path.exists():
        lines = [l for l in path.read_text().splitlines() if l and json.loads(l)["step"] <= step]
        write_text(path, "".join(l + "\n" for l in lines))


def train(config, run_dir, resume=False, data_root=None, console=None):
    """Train to config.steps, resuming from run_dir's checkpoint when asked. Returns the Model.

    With resume=True, config may be None (continue to the saved step count) or carry new steps."""
    run_dir = Path(run_dir)
    if resume:
        tensors, state = load_checkpoint(run_dir)
        saved = RunConfig.from_dict(state["config"])
        steps = config.steps if config else saved.steps
        if steps < state["step"]:
            raise DiffkitError(f"--steps {steps} is below the checkpoint's step {state['step']}")
        config = RunConfig.from_dict({**saved.to_dict(), "steps": steps})
    elif has_checkpoint(run_dir):
        raise DiffkitError(f"{run_dir} already holds a run; continue it with --resume or choose another --out")

    torch.manual_seed(config.seed)  # network initialisation
    model = build_model(config)
    network = model.network
    images = to_model_range(load_images(config.dataset, "train", data_root))
    ema = copy.deepcopy(network).requires_grad_(False)
    optimizer = torch.optim.Adam(network.parameters(), lr=config.lr)
    log_path = run_dir / "log.jsonl"

    if resume:
        network.load_state_dict(split_prefix(tensors, "network"))
        ema.load_state_dict(split_prefix(tensors, "ema"))
        optimizer.load_state_dict(unflatten_optimizer(tensors, state["optimizer"]))
        model.degradation.load_prior_state(split_prefix(tensors, "prior"))
        start, seconds = state["step"], state["train_seconds"]
        _trim_log(log_path, start)
    else:
        model.degradation.fit_prior(images, torch.Generator().manual_seed(config.seed))
        start, seconds = 0, 0.0
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text(run_dir / "config.json", json.dumps(config.to_dict(), indent=2))

    batches = Batches(images, config.batch_size, config.seed)
    network.train()
    step, window, window_start = start, [], time.perf_counter()

    def stats():
        return {"train_seconds": seconds, "images_seen": step * config.batch_size}

    columns = (TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
               TextColumn("loss {task.fields[loss]:.4f}"), TextColumn("{task.fields[speed]:.0f} img/s"),
               TimeRemainingColumn())
    with Progress(*columns, console=console) as progress, deferred_interrupt() as interrupt:
        task = progress.add_task("train", total=config.steps, completed=start, loss=float("nan"), speed=0.0)
        while step < config.steps:
            tick = time.perf_counter()
            generator = step_generator(config.seed, step)
            torch.manual_seed(generator.initial_seed())  # for draws inside the network (dropout)
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(config, step)
            loss = model.degradation.loss(network, batches(step), generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(network.parameters(), config.grad_clip)
            optimizer.step()
            decay = min(config.ema_decay, (1 + step) / (10 + step))
            with torch.no_grad():
                for e, p in zip(ema.parameters(), network.parameters()):
                    e.lerp_(p, 1 - decay)
            step += 1
            seconds += time.perf_counter() - tick
            window.append(loss.item())
            if step % config.log_every == 0 or step == config.steps:
                speed = len(window) * config.batch_size / (time.perf_counter() - window_start)
                entry = {"step": step, "loss": sum(window) / len(window), "images_per_s": speed,
                         "lr": learning_rate(config, step - 1)}
                with open(log_path, "a") as f:
                    f.write(json.dumps(entry) + "\n")
                progress.update(task, loss=entry["loss"], speed=speed)
                window, window_start = [], time.perf_counter()
            progress.update(task, completed=step)
            if step % config.checkpoint_every == 0 or step == config.steps:
                _checkpoint(run_dir, model, network, ema, optimizer, step, stats())
            if interrupt:
                _checkpoint(run_dir, model, network, ema, optimizer, step, stats())
                raise Interrupted(step)
    model.network, model.step = ema.eval(), step
    return model
