"""The `diffkit` command line. Plugins add commands through the register_commands(cli) hook."""

import json
import sys

import click
from rich.console import Console
from rich.table import Table

from diffkit import __version__
from diffkit.config import PRESETS, RunConfig, merge, preset as load_preset
from diffkit.data import DATASETS
from diffkit.errors import DiffkitError
from diffkit.options import describe, split_assignments
from diffkit.plugins import KINDS, components, get_component, manager, plugin_table

console = Console(stderr=True)
COMPONENT_KEYS = {"degradation": "degradations", "network": "networks", "sampler": "samplers"}


def route_options(assignments, config):
    """Put each `-o key=value` into the options of the component whose schema has `key`.

    `degradation.key`, `network.key` or `sampler.key` names the component explicitly."""
    config.sampler = config.sampler or get_component("degradations", config.degradation).cls.default_sampler
    for key, value in split_assignments(assignments).items():
        prefix, _, bare = key.partition(".")
        if bare and prefix in COMPONENT_KEYS:
            getattr(config, f"{prefix}_options")[bare] = value
            continue
        owners = [role for role, kind in COMPONENT_KEYS.items()
                  if key in get_component(kind, getattr(config, role)).cls.Options.__dataclass_fields__]
        if not owners:
            raise DiffkitError(f"unknown option {key!r} for degradation {config.degradation!r}, network "
                               f"{config.network!r} and sampler {config.sampler!r} (see `diffkit list`)")
        if len(owners) > 1:
            raise DiffkitError(f"option {key!r} is ambiguous: write {' or '.join(f'{o}.{key}' for o in owners)}")
        getattr(config, f"{owners[0]}_options")[key] = value


class PluginGroup(click.Group):
    """A click group that lets plugins add their commands (register_commands) on first use."""

    _plugins_added = False

    def _add_plugin_commands(self):
        if not self._plugins_added:
            self._plugins_added = True
            manager().hook.register_commands(cli=self)

    def list_commands(self, ctx):
        self._add_plugin_commands()
        return super().list_commands(ctx)

    def get_command(self, ctx, name):
        self._add_plugin_commands()
        return super().get_command(ctx, name)


@click.group(cls=PluginGroup)
@click.version_option(__version__, prog_name="diffkit")
def cli():
    """Train, sample and compare diffusion-style generators with plug-in degradations."""


@cli.command()
@click.option("-d", "--degradation", help="Degradation (forward process) name, e.g. gaussian.")
@click.option("--network", help="Restoration network name, e.g. unet or cnn.")
@click.option("--sampler", help="Default sampler recorded for `diffkit sample`.")
@click.option("-o", "--option", "assignments", multiple=True, metavar="KEY=VALUE",
              help="Component option; prefix degradation./network./sampler. when ambiguous.")
@click.option("--preset", help=f"Start from a preset: {', '.join(PRESETS)}.")
@click.option("--steps", type=int, help="Optimizer steps in total.")
@click.option("--batch-size", type=int)
@click.option("--lr", type=float, help="Adam learning rate.")
@click.option("--ema-decay", type=float)
@click.option("--checkpoint-every", type=int, help="Checkpoint every K steps (and at the end).")
@click.option("--seed", type=int)
@click.option("--dataset", type=click.Choice(sorted(DATASETS)))
@click.option("--data-root", type=click.Path(), help="Dataset folder (default: $DIFFKIT_DATA, else download).")
@click.option("--out", "run_dir", required=True, type=click.Path(), help="Run directory to create.")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint.")
def train(degradation, network, sampler, assignments, preset, steps, batch_size, lr, ema_decay,
          checkpoint_every, seed, dataset, data_root, run_dir, resume):
    """Train a model and write checkpoints to RUN_DIR."""
    from diffkit.train import Interrupted
    from diffkit.train import train as run_training

    flags = dict(degradation=degradation, network=network, sampler=sampler, steps=steps, batch_size=batch_size,
                 lr=lr, ema_decay=ema_decay, checkpoint_every=checkpoint_every, seed=seed, dataset=dataset)
    if resume:
        changed = [k for k, v in flags.items() if v is not None and k != "steps"] + (["option"] if assignments else [])
        if changed or preset:
            raise DiffkitError("--resume continues with the run's saved config; only --steps may be given")
        config = RunConfig(steps=steps) if steps else None
    else:
        values = merge(load_preset(preset) if preset else {}, flags)
        config = RunConfig.from_dict(values)
        route_options(assignments, config)
    try:
        model = run_training(config, run_dir, resume=resume, data_root=data_root, console=console)
    except Interrupted as exc:
        console.print(f"[yellow]{exc}")
        sys.exit(130)
    console.print(f"[green]trained[/] {model.step} steps -> {run_dir}")


@cli.command()
@click.argument("run_dir", type=click.Path())
@click.option("-n", "count", type=int, default=64, show_default=True, help="Number of images.")
@click.option("--sampler", help="Sampler name (default: the run's).")
@click.option("-o", "--option", "assignments", multiple=True, metavar="KEY=VALUE", help="Sampler option.")
@click.option("--steps", type=int, help="Sampling steps (default: the run's, else the sampler's).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--batch-size", type=int, default=256, show_default=True)
@click.option("--out", "out", required=True, type=click.Path(), help="Output .npz (images: uint8 N×H×W).")
@click.option("--grid", type=click.Path(), help="Also write a PNG grid of the first 100 images.")
@click.option("--trajectory", type=click.Path(), help="Also write the reverse path x_T -> x_0 of 8 samples as PNG.")
def sample(run_dir, count, sampler, assignments, steps, seed, batch_size, out, grid, trajectory):
    """Sample images from a trained run (EMA weights, prior draws only)."""
    from diffkit.generate import generate, save_samples
    from diffkit.images import save_grid
    from diffkit.model import load_model

    if not str(out).endswith(".npz"):
        raise DiffkitError(f"--out must be a .npz file, got {out}")
    if batch_size < 1:
        raise DiffkitError(f"--batch-size must be a positive integer, got {batch_size}")
    model = load_model(run_dir)
    options = split_assignments(assignments) if assignments or sampler else None
    images, path, meta = generate(model, count, sampler, options, steps, seed, batch_size,
                                  trajectory_count=8 if trajectory else 0, console=console)
    save_samples(out, images, meta)
    if grid:
        save_grid(grid, images[:100])
    if trajectory:
        frames = path[:: max(1, len(path) // 10)][:10] + [path[-1]]
        import torch
        save_grid(trajectory, torch.stack(frames, dim=1).flatten(0, 1), nrow=len(frames))
    console.print(f"[green]wrote[/] {count} images ({meta['sampler']}, {meta['steps']} steps) -> {out}")


@cli.command()
@click.option("-d", "--degradation", required=True, help="Degradation name.")
@click.option("-o", "--option", "assignments", multiple=True, metavar="KEY=VALUE", help="Degradation option.")
@click.option("--grid", required=True, type=click.Path(), help="PNG: one row per image, x_0 ... x_T left to right.")
@click.option("-n", "count", type=int, default=8, show_default=True, help="Real digits to degrade.")
@click.option("--frames", type=int, default=11, show_default=True, help="Columns from t = 0 to t = T.")
@click.option("--dataset", type=click.Choice(sorted(DATASETS)), default="mnist", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--data-root", type=click.Path())
def degrade(degradation, assignments, grid, count, frames, dataset, seed, data_root):
    """Show the forward process D(x0, t) on real test digits."""
    import torch

    from diffkit.data import load_images, to_model_range, to_uint8
    from diffkit.images import save_grid
    from diffkit.model import build_degradation

    if count < 1 or frames < 2:
        raise DiffkitError("-n must be at least 1 and --frames at least 2")
    _, d = build_degradation(degradation, split_assignments(assignments))
    x0 = to_model_range(load_images(dataset, "test", data_root)[:count])
    g = torch.Generator().manual_seed(seed)
    params = d.draw_params(count, g)
    steps = torch.linspace(0, d.T, frames).round().long()
    columns = [d.degrade(x0, torch.full((count,), int(t)), g, params=params) for t in steps]
    save_grid(grid, to_uint8(torch.stack(columns, dim=1).flatten(0, 1)), nrow=frames)
    console.print(f"[green]wrote[/] {grid}: {count} digits × t = {', '.join(map(str, steps.tolist()))}")


@cli.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plugins_command(as_json):
    """Installed plugins, their distributions and what each registers."""
    rows = plugin_table()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table("plugin", "distribution", "version", *KINDS, "status")
    for r in rows:
        table.add_row(r["name"], r["distribution"], r["version"], *(", ".join(r[k]) for k in KINDS), r["status"])
    Console().print(table)


@cli.command("list")
@click.argument("kind", type=click.Choice(KINDS))
def list_command(kind):
    """Components of one kind with their options and defaults."""
    table = Table("name", "options (type = default)", "plugin", "description")
    for name, c in sorted(components(kind).items()):
        opts = "\n".join(f"{k}: {t} = {d}" for k, t, d in describe(c.cls.Options)) or "-"
        table.add_row(name, opts, f"{c.plugin} ({c.distribution} {c.version})", c.cls.description)
    Console().print(table)


def main():
    cli()
