"""The training loop: Adam, EMA weights, periodic checkpoints, exact resume, any device, any number of ranks.

Every random draw of step s (timesteps, noise, per-image parameters) comes from a generator seeded by
(seed, s) and is drawn for the whole global batch; under torchrun each rank keeps its slice of the batch
and of the draws, and DistributedDataParallel averages the gradients. So N ranks take the same step as
one process (up to floating-point summation order), and a run resumes exactly on any device and number
of ranks without saving any RNG state. Batches come from a per-epoch permutation seeded by (seed, epoch).
"""

import contextlib
import copy
import dataclasses
import functools
import json
import signal
import threading
import time
from pathlib import Path

import torch
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch.nn.parallel import DistributedDataParallel

from diffkit import distributed, draws
from diffkit.atomic import refuse_link, write_text
from diffkit.checkpoint import (flatten_optimizer, has_checkpoint, load_checkpoint, pack, save_checkpoint,
                                unflatten_optimizer, unpack)
from diffkit.config import RunConfig
from diffkit.data import load_images, load_labels, to_model_range
from diffkit.degradation import labels_for
from diffkit.device import AutocastNetwork, grad_scaler, resolve_device, resolve_precision
from diffkit.errors import DiffkitError, Interrupted
from diffkit.plugins import manager
from diffkit.run import Run
from diffkit.runlock import run_lock


class Batches:
    """Batch `step` of an epoch-wise shuffled dataset, computable for any step: (images, labels or None)."""

    def __init__(self, images, batch_size, seed, labels=None):
        self.images, self.labels, self.batch_size, self.seed = images, labels, batch_size, seed
        self.per_epoch = max(1, len(images) // batch_size)
        self._epoch, self._perm = None, None

    def __call__(self, step):
        epoch, index = divmod(step, self.per_epoch)
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(self.seed * 7_919 + epoch)
            self._epoch, self._perm = epoch, torch.randperm(len(self.images), generator=g)
        idx = self._perm[index * self.batch_size:(index + 1) * self.batch_size]
        return self.images[idx], None if self.labels is None else self.labels[idx]


@contextlib.contextmanager
def deferred_interrupt():
    """Turn Ctrl-C and SIGTERM (what torchrun, schedulers and `docker stop` send) into a flag checked
    between steps, so the checkpoint is never mid-update.

    Python lets only the main thread set signal handlers; elsewhere (a notebook's worker thread)
    the signals keep their usual meaning."""
    requested = []
    if threading.current_thread() is not threading.main_thread():
        yield requested
        return
    previous = {s: signal.signal(s, lambda signum, frame: requested.append(signum)) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield requested
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


class Diverged(DiffkitError):
    """The loss or the gradients stopped being finite; nothing of that step was applied or saved."""

    def __init__(self, step, saved_step):
        kept = f"the last good checkpoint (step {saved_step}) is kept; --resume continues from it" \
            if saved_step else "no checkpoint had been written yet"
        super().__init__(f"training diverged at step {step}: the loss or its gradients are not finite "
                         f"(try a lower --lr); {kept}")


def warn_on(console):
    """warn(line): one line on rank 0's console (nothing without a console)."""
    def warn(line):
        if console is not None and distributed.is_main():
            console.print(escape(line), highlight=False, soft_wrap=True)
    return warn


def learning_rate(config, step):
    if config.warmup_steps and step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    return config.lr


def read_log(path, warn=None):
    """The entries of a log.jsonl; a line that is not a JSON object with a step (a crash mid-write) is
    skipped, and `warn` says how many were."""
    entries, bad = [], 0
    for line in Path(path).read_text(errors="replace").splitlines() if Path(path).exists() else []:
        try:
            entry = json.loads(line)
            if not isinstance(entry, dict) or not isinstance(entry.get("step"), int):
                raise ValueError
            entries.append(entry)
        except ValueError:
            bad += 1 if line.strip() else 0
    if bad and warn:
        warn(f"Warning: skipped {bad} unreadable line(s) of {path}")
    return entries


def _trim_log(path, step, warn):
    """Keep the log lines of steps the checkpoint already holds (a resume rewrites the rest)."""
    if path.exists():
        kept = [e for e in read_log(path, warn) if e["step"] <= step]
        write_text(path, "".join(json.dumps(e) + "\n" for e in kept))


class TrainLoop:
    """One step at a time: forward-backward, optimizer and EMA update, log, save. `fresh` starts a built Run
    (network just initialised), `resumed` continues one from its checkpoint; `train` builds the Run for both."""

    def __init__(self, run, run_dir, data_root=None, console=None):
        """What every training holds for `run`: the EMA copy, optimizer, gradient scaler, data and its batches,
        and the network as the loss calls it (under DDP on several ranks, compiled if the config says so, under
        autocast in the run's precision)."""
        self.run, self.config, self.network = run, run.config, run.network
        self.run_dir, self.console, self.warn = Path(run_dir), console, warn_on(console)
        self.log_path = self.run_dir / "log.jsonl"
        if self.config.batch_size < distributed.world_size():
            raise DiffkitError(f"--batch-size {self.config.batch_size} is smaller than the {distributed.world_size()} "
                               f"processes it is split over")
        self.ema = copy.deepcopy(self.network).requires_grad_(False)
        self.optimizer = torch.optim.Adam(self.network.parameters(), lr=self.config.lr)
        self.scaler = grad_scaler(run.device, run.precision)
        self.images = to_model_range(load_images(self.config.dataset, "train", data_root))
        self.labels = load_labels(self.config.dataset, "train", data_root) if self.config.conditional else None
        self.batches = Batches(self.images, self.config.batch_size, self.config.seed, self.labels)
        trained = self.network
        if distributed.active():
            trained = DistributedDataParallel(trained, device_ids=[run.device.index] if run.device.type == "cuda" else None)
        if self.config.compile:
            trained = torch.compile(trained)
        self.model = AutocastNetwork(trained, run.device, run.precision)
        self.step, self.seconds, self.saved_step = 0, 0.0, None

    @classmethod
    def fresh(cls, run, run_dir, data_root=None, console=None):
        """Step 0 of a new run: the degradation's prior fitted to the training images, config.json written and
        any earlier log.jsonl emptied."""
        loop = cls(run, run_dir, data_root, console)
        d = run.degradation
        d.fit_prior(loop.images, torch.Generator().manual_seed(run.config.seed), **labels_for(d.fit_prior, loop.labels))
        if distributed.is_main():
            loop.log_path.unlink(missing_ok=True)
            write_text(loop.run_dir / "config.json", json.dumps(run.config.to_dict(), indent=2))
        return loop

    @classmethod
    def resumed(cls, run, run_dir, tensors, state, data_root=None, console=None):
        """The run of a checkpoint (`load_checkpoint`'s tensors and state) at its step, with the log trimmed to it."""
        loop = cls(run, run_dir, data_root, console)
        loop._restore(tensors, state)
        loop.saved_step = loop.step
        if distributed.is_main():
            _trim_log(loop.log_path, loop.step, loop.warn)
        return loop

    def _restore(self, tensors, state):
        """Network, EMA, optimizer, scaler, prior, step and seconds from a checkpoint, or one line naming what in
        it does not fit (written by another config or diffkit version, or damaged)."""
        where = f"the checkpoint in {self.run_dir}"
        seconds = state.get("train_seconds")
        if not isinstance(state.get("optimizer"), dict) or isinstance(seconds, bool) \
                or not isinstance(seconds, (int, float)):
            raise DiffkitError(f"{where} cannot be resumed: its state.json lacks the optimizer state or a numeric "
                               f"train_seconds (written by an older diffkit, or edited)")
        try:
            parts = unpack(tensors)
            self.network.load_state_dict(parts["network"])
            self.ema.load_state_dict(parts["ema"])
            self.optimizer.load_state_dict(unflatten_optimizer(tensors, state["optimizer"]))
            if state.get("grad_scaler"):
                self.scaler.load_state_dict(state["grad_scaler"])
        except (RuntimeError, KeyError, ValueError, TypeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DiffkitError(f"{where} does not fit this run's network or optimizer ({first}); was the network "
                               f"changed since it was saved, or the file edited?") from None
        try:
            self.run.degradation.load_prior_state(unpack(tensors)["prior"])
        except (KeyError, ValueError, RuntimeError) as exc:
            raise DiffkitError(f"{where} holds no usable prior ({exc}); was it edited?") from None
        self.step, self.seconds = state["step"], seconds

    def forward_backward(self, step):
        """This rank's share of the global batch's loss, backpropagated; returns the loss (a tensor).

        Each rank's loss is its images' summed loss over the global batch size, times the number of ranks,
        so DDP's mean over ranks is the global batch's mean loss, for uneven splits too."""
        generator = draws.seeded(self.config.seed, step)
        torch.manual_seed(generator.initial_seed())  # for draws inside the network (dropout)
        d, (x0, labels) = self.run.degradation, self.batches(step)
        t = d.sample_timesteps(len(x0), generator)
        params = d.draw_params(len(x0), generator)
        noise = draws.randn(x0.shape, generator)
        mine, device = distributed.shard(len(x0)), self.run.device
        model = self.model
        if labels is not None:  # drawn last, so an unconditional run's draws are what they always were
            dropped = draws.rand((len(x0),), generator) < self.config.cond_dropout
            labels = torch.where(dropped, self.network.classes, labels)
            model = functools.partial(self.model, labels=labels[mine].to(device))
        losses = d.training_losses(model, x0[mine].to(device), t[mine].to(device), noise[mine].to(device),
                                   draws.to_device(draws.take(params, mine), device))
        loss = losses.sum() * distributed.world_size() / len(x0)
        self.scaler.scale(loss).backward()
        return loss.detach()

    def run_step(self, interrupted=False):
        """One optimizer step. Returns (loss, stop): stop is true on every rank when any rank was interrupted.

        A non-finite loss or gradient norm on any rank raises Diverged before the update is applied
        (with fp16, inf gradients are the scaler's business: it skips the step and lowers its scale)."""
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(self.config, self.step)
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.forward_backward(self.step)
        self.scaler.unscale_(self.optimizer)
        norm = torch.nn.utils.clip_grad_norm_(self.network.parameters(), self.config.grad_clip)
        finite = bool(torch.isfinite(loss)) and (self.scaler.is_enabled() or bool(torch.isfinite(norm)))
        diverged, stop = distributed.any_rank([not finite, bool(interrupted)], self.run.device)
        if diverged:
            raise Diverged(self.step + 1, self.saved_step)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        decay = min(self.config.ema_decay, (1 + self.step) / (10 + self.step))
        with torch.no_grad():
            for e, p in zip(self.ema.parameters(), self.network.parameters()):
                e.lerp_(p, 1 - decay)
        self.step += 1
        return loss, stop

    def log(self, window, seconds):
        """Append the window's mean loss (over steps and ranks) and speed to log.jsonl; returns the entry."""
        loss = distributed.mean(torch.stack(window).mean().item(), self.run.device)
        entry = {"step": self.step, "loss": loss, "images_per_s": len(window) * self.config.batch_size / seconds,
                 "lr": learning_rate(self.config, self.step - 1)}
        if distributed.is_main():
            with open(self.log_path, "a") as f:
                f.write(json.dumps(entry, allow_nan=False) + "\n")
            manager().hook.log_metrics(run_dir=self.run_dir, step=self.step,
                                       metrics={f"train/{k}": v for k, v in entry.items() if k != "step"})
        return entry

    def save(self):
        """Checkpoint the current step on rank 0, once per step (Ctrl-C on a checkpoint step saves once)."""
        if self.saved_step == self.step:
            return
        self.saved_step = self.step
        if not distributed.is_main():
            return
        opt_tensors, opt_rest = flatten_optimizer(self.optimizer.state_dict())
        tensors = pack(self.network.state_dict(), self.ema.state_dict(), self.run.degradation.prior_state(), opt_tensors)
        state = {"config": self.config.to_dict(), "seed": self.config.seed, "step": self.step,
                 "versions": self.run.versions(), "optimizer": opt_rest,
                 "grad_scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
                 "device": str(self.run.device), "world_size": distributed.world_size(),
                 "train_seconds": self.seconds, "images_seen": self.step * self.config.batch_size}
        save_checkpoint(self.run_dir, self.step, tensors, state, keep=self.config.keep_checkpoints,
                        pinned=self.config.keep_steps)

    def run_loop(self):
        """Train to config.steps; returns the Run with the EMA network. Raises Interrupted after Ctrl-C, and
        one line on each surviving rank when another process of a torchrun job dies."""
        columns = (TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("loss {task.fields[loss]:.4f}"), TextColumn("{task.fields[speed]:.0f} img/s"),
                   TimeRemainingColumn())
        self.network.train()
        with Progress(*columns, console=self.console, disable=not distributed.is_main()) as progress, \
                deferred_interrupt() as interrupt:
            task = progress.add_task("train", total=self.config.steps, completed=self.step, loss=float("nan"), speed=0.0)
            try:
                self._steps(progress, task, interrupt)
            except RuntimeError as exc:
                reason = distributed.peer_lost(exc)
                if reason is None:
                    raise
                kept = f"step {self.saved_step}" if self.saved_step else "none yet"
                raise DiffkitError(f"rank {distributed.rank()}: another process of this torchrun job stopped ({reason}); "
                                   f"the newest checkpoint is {kept}: run the same command with --resume "
                                   f"(torchrun's own report follows)") from None
        distributed.barrier()  # rank 0's last checkpoint is complete before any rank reads it
        self.run.network, self.run.step = self.ema.eval(), self.step
        self.run.state = {"train_seconds": self.seconds, "images_seen": self.step * self.config.batch_size}
        return self.run

    def _steps(self, progress, task, interrupt):
        """Steps up to config.steps, logging and checkpointing as configured."""
        config, window, window_start = self.config, [], time.perf_counter()
        while self.step < config.steps:
            tick = time.perf_counter()
            loss, stop = self.run_step(interrupt)
            window.append(loss)
            self.seconds += time.perf_counter() - tick
            if self.step % config.log_every == 0 or self.step == config.steps:
                entry = self.log(window, time.perf_counter() - window_start)
                progress.update(task, loss=entry["loss"], speed=entry["images_per_s"])
                window, window_start = [], time.perf_counter()
            progress.update(task, completed=self.step)
            if self.step % config.checkpoint_every == 0 or self.step in (config.steps, *config.keep_steps):
                self.save()
            if stop:
                self.save()
                distributed.barrier()
                raise Interrupted(self.step, interrupt[0] if interrupt else signal.SIGINT)

def continued_config(state, config, precision):
    """The config a resumed run trains with: the checkpoint's, with `config`'s steps when given and its keep_steps
    added to the saved ones (a checkpoint pinned before stays pinned)."""
    saved = RunConfig.from_dict(state["config"])
    steps = config.steps if config else saved.steps
    if steps < state["step"]:
        raise DiffkitError(f"--steps {steps} is below the checkpoint's step {state['step']}")
    if precision is not None and precision != saved.precision:
        raise DiffkitError(f"--resume continues with the run's saved config (precision {saved.precision}); "
                           f"--precision {precision} cannot change it")
    keep_steps = sorted({*saved.keep_steps, *(config.keep_steps if config else ())})
    return dataclasses.replace(saved, steps=steps, keep_steps=keep_steps)


def train(config, run_dir, resume=False, data_root=None, device="auto", precision=None, compile=False, console=None):
    """Train to config.steps in run_dir, holding the run directory's lock; returns the trained Run with EMA weights.

    `config` is a resolved RunConfig (`make_config`); with resume=True it may be None (continue to the saved step
    count) or carry new steps. Device and precision are resolved here, once (precision None: the run's recorded
    precision when resuming, else `auto`), and the Run is built once, for both paths."""
    run_dir = Path(run_dir)
    if resume and not run_dir.is_dir():
        raise DiffkitError(f"{run_dir} is not a run directory (train one with `diffkit train --out {run_dir}`)")
    device = resolve_device(device)
    distributed.setup(device)
    with run_lock(run_dir):
        refuse_link(run_dir / "checkpoints", "checkpoints")
        if resume:
            tensors, state = load_checkpoint(run_dir, warn_on(console))
            config = continued_config(state, config, precision)
        elif has_checkpoint(run_dir):
            raise DiffkitError(f"{run_dir} already holds a run; continue it with --resume or choose another --out")
        elif config.sampler is None:
            raise DiffkitError("train needs a resolved config: build it with make_config or resolve_config")
        precision = resolve_precision(precision or config.precision, device)
        config = dataclasses.replace(config, precision=precision, compile=compile)
        torch.manual_seed(config.seed)  # network initialisation, the same on every rank
        run = Run(config, device, precision)
        loop = (TrainLoop.resumed(run, run_dir, tensors, state, data_root, console) if resume
                else TrainLoop.fresh(run, run_dir, data_root, console))
        return loop.run_loop()
