"""The `diffkit` command line. Plugins add commands through the register_commands(cli) hook."""

import json
import os
import sys

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from diffkit import __version__, distributed
from diffkit.config import PRECISIONS, PRESETS
from diffkit.data import DATASETS
from diffkit.errors import DiffkitError
from diffkit.options import describe, split_assignments
from diffkit.plugins import KINDS, components, manager, plugin_table

console = Console(stderr=True, quiet=not distributed.is_main())  # under torchrun, rank 0 speaks


def device_options(precision_default="fp32", precision_help="Autocast precision of network calls."):
    """--device and --precision, shared by every command that runs a network."""
    def decorate(command):
        command = click.option("--precision", type=click.Choice(PRECISIONS), default=precision_default,
                               show_default=precision_default is not None, help=precision_help)(command)
        return click.option("--device", default="auto", show_default=True,
                            help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps.")(command)
    return decorate


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
@click.option("--batch-size", type=int, help="Global batch size (split over torchrun's processes).")
@click.option("--lr", type=float, help="Adam learning rate.")
@click.option("--ema-decay", type=float)
@click.option("--checkpoint-every", type=int, help="Checkpoint every K steps (and at the end).")
@click.option("--seed", type=int)
@click.option("--dataset", type=click.Choice(sorted(DATASETS)))
@click.option("--data-root", type=click.Path(), help="Dataset folder (default: $DIFFKIT_DATA, else download).")
@click.option("--out", "run_dir", required=True, type=click.Path(), help="Run directory to create.")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint.")
@device_options(None, "Autocast precision of network calls; default: the run's own when resuming, else auto "
                      "(bf16 on GPUs that support it, fp32 elsewhere).")
@click.option("--compile", "compile_", is_flag=True, help="torch.compile the network (pays off on GPUs).")
def train(degradation, network, sampler, assignments, preset, steps, batch_size, lr, ema_decay,
          checkpoint_every, seed, dataset, data_root, run_dir, resume, device, precision, compile_):
    """Train a model and write checkpoints to RUN_DIR (several processes: torchrun ... -m diffkit train)."""
    from diffkit.api import train as run_training
    from diffkit.atomic import check_writable
    from diffkit.trainer import Interrupted

    check_writable(run_dir, "--out", folder=True)
    try:
        run = run_training(run_dir, preset=preset, options=list(assignments), resume=resume, device=device,
                           precision=precision, compile=compile_, data_root=data_root, console=console,
                           degradation=degradation, network=network, sampler=sampler, steps=steps,
                           batch_size=batch_size, lr=lr, ema_decay=ema_decay, checkpoint_every=checkpoint_every,
                           seed=seed, dataset=dataset)
    except Interrupted as exc:
        console.print(f"[yellow]{exc}")
        sys.exit(exc.exit_code)
    console.print(f"[green]trained[/] {run.step} steps on {run.device} ({run.precision}) -> {escape(str(run_dir))}")


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
@device_options()
def sample(run_dir, count, sampler, assignments, steps, seed, batch_size, out, grid, trajectory, device, precision):
    """Sample images from a trained run (EMA weights, prior draws only; torchrun splits the batches)."""
    import torch

    from diffkit import distributed
    from diffkit.atomic import check_writable
    from diffkit.images import save_grid
    from diffkit.run import Run

    if not str(out).endswith(".npz"):
        raise DiffkitError(f"--out must be a .npz file, got {out}")
    for option, path in (("--out", out), ("--grid", grid), ("--trajectory", trajectory)):
        if path:
            check_writable(path, option)
    run = Run.load(run_dir, device, precision)
    distributed.setup(run.device)
    options = split_assignments(assignments) if assignments or sampler else None
    samples = run.sample(count, sampler, options, steps, seed, batch_size, trajectory=8 if trajectory else 0,
                         console=console)
    if distributed.is_main():
        samples.save(out)
        if grid:
            save_grid(grid, samples.images[:100])
        if trajectory:
            path = samples.trajectory
            frames = path[:: max(1, len(path) // 10)][:10] + [path[-1]]
            save_grid(trajectory, torch.stack(frames, dim=1).flatten(0, 1), nrow=len(frames))
    meta = samples.meta
    console.print(f"[green]wrote[/] {count} images ({meta['sampler']}, {meta['steps']} steps, {meta['nfe']} NFE, "
                  f"{meta['device']}) -> {escape(str(out))}")


@cli.command()
@click.option("-d", "--degradation", required=True, help="Degradation name.")
@click.option("-o", "--option", "assignments", multiple=True, metavar="KEY=VALUE", help="Degradation option.")
@click.option("--grid", required=True, type=click.Path(), help="PNG: one row per image, x_0 ... x_T left to right.")
@click.option("-n", "count", type=int, default=8, show_default=True, help="Real digits to degrade.")
@click.option("--frames", type=int, default=11, show_default=True, help="Columns from t = 0 to t = T.")
@click.option("--dataset", type=click.Choice(sorted(DATASETS)), default="mnist", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--data-root", type=click.Path())
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps.")
def degrade(degradation, assignments, grid, count, frames, dataset, seed, data_root, device):
    """Show the forward process D(x0, t) on real test digits."""
    import torch

    from diffkit import draws
    from diffkit.atomic import check_writable
    from diffkit.data import load_images, to_model_range, to_uint8
    from diffkit.device import resolve_device
    from diffkit.images import save_grid
    from diffkit.run import build_degradation

    if not 1 <= count <= 1000 or not 2 <= frames <= 1000:
        raise DiffkitError("-n must be in 1..1000 and --frames in 2..1000")
    check_writable(grid, "--grid")
    device = resolve_device(device)
    _, d = build_degradation(degradation, split_assignments(assignments))
    x0 = to_model_range(load_images(dataset, "test", data_root)[:count]).to(device)
    g = torch.Generator().manual_seed(seed)
    params = draws.to_device(d.draw_params(count, g), device)
    steps = torch.linspace(0, d.T, frames, device="cpu").round().long().tolist()
    columns = [d.degrade(x0, torch.full((count,), t, device=device), g, params=params) for t in steps]
    save_grid(grid, to_uint8(torch.stack(columns, dim=1).flatten(0, 1)).cpu(), nrow=frames)
    console.print(f"[green]wrote[/] {escape(str(grid))}: {count} digits × t = {', '.join(map(str, steps))}")


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


def _fail(message, code):
    """Print `Error: message` as one line on stderr and exit with `code`."""
    click.echo(f"Error: {' '.join(str(message).split())}", err=True)
    sys.exit(code)


def main(args=None):
    """The `diffkit` command: every failure is one line on stderr and a non-zero exit, never a traceback.

    Bad input raises DiffkitError (exit 1); click's usage errors exit 2; Ctrl-C outside training exits 130;
    an OSError (a full disk, a permission) is reported with its path; anything else is a bug, reported in
    one line (set DIFFKIT_DEBUG=1 to see its traceback)."""
    try:
        code = cli.main(args=args, prog_name="diffkit", standalone_mode=False)
    except click.UsageError as exc:
        where = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx else ""
        _fail(exc.format_message() + where, exc.exit_code)
    except click.ClickException as exc:
        _fail(exc.format_message(), exc.exit_code)
    except (click.Abort, KeyboardInterrupt):
        click.echo("Error: interrupted", err=True)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)  # an import cut short (torch's, say) can crash the interpreter's shutdown
    except OSError as exc:
        if os.environ.get("DIFFKIT_DEBUG"):
            raise
        _fail(f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else ""), 1)
    except Exception as exc:  # noqa: BLE001 - the last resort: a bug, not bad input
        if os.environ.get("DIFFKIT_DEBUG"):
            raise
        _fail(f"unexpected {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} "
              f"(a bug in diffkit or a plugin; run with DIFFKIT_DEBUG=1 for the traceback)", 1)
    sys.exit(code if isinstance(code, int) else 0)
