"""The `diffkit` command line. Plugins add commands through the register_commands(cli) hook."""

import json
import os
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from diffkit import __version__, distributed
from diffkit.config import DATASET_NAMES, PRECISIONS, PRESETS
from diffkit.errors import DiffkitError, Interrupted
from diffkit.options import describe, split_assignments
from diffkit.plugins import KINDS, call_hook, components, manager, plugin_table

console = Console(stderr=True, quiet=not distributed.is_main())  # under torchrun, rank 0 speaks


def table_console():
    """stdout for tables: as wide as a terminal, or wide enough not to cut cells when piped to a file."""
    return Console() if sys.stdout.isatty() else Console(width=240)


def data_root_option(command):
    """--data-root, shared by every command that reads a dataset."""
    return click.option("--data-root", type=click.Path(),
                        help="Dataset folder [default: $DIFFKIT_DATA, else torchvision's download].")(command)


def config_default(name):
    """' [default: X]' for a RunConfig field, as --help shows it: what a run gets unless a preset or --config sets it."""
    from diffkit.config import RunConfig

    return f" [default: {RunConfig.__dataclass_fields__[name].default}, unless --preset/--config sets it]"


def device_options(precision_default="fp32", precision_help="Autocast precision of network calls."):
    """--device and --precision, shared by every command that runs a network."""
    def decorate(command):
        command = click.option("--precision", type=click.Choice(PRECISIONS), default=precision_default,
                               show_default=precision_default is not None, help=precision_help)(command)
        return click.option("--device", default="auto", show_default=True,
                            help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps.")(command)
    return decorate


class PluginGroup(click.Group):
    """A click group that lets plugins add their commands (register_commands) on first use, and again if
    the plugin manager is rebuilt (as tests do with another DIFFKIT_PLUGINS)."""

    _commands_from = None  # the plugin manager whose commands were added

    def _add_plugin_commands(self):
        pm = manager()
        if self._commands_from is not pm:
            self._commands_from = pm
            for impl in pm.hook.register_commands.get_hookimpls():
                call_hook(impl, "register_commands", cli=self)

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
@click.option("-d", "--degradation", help="Degradation (forward process) name; `diffkit list` shows them."
              + config_default("degradation"))
@click.option("--network", help="Restoration network name, e.g. unet or cnn." + config_default("network"))
@click.option("--sampler", help="Default sampler recorded for `diffkit sample` [default: the degradation's].")
@click.option("-o", "--option", "assignments", multiple=True, metavar="KEY=VALUE",
              help="Component option; prefix degradation./network./sampler. when ambiguous.")
@click.option("--preset", help=f"Start from a preset: {', '.join(PRESETS)}.")
@click.option("--config", "config_file", type=click.Path(), help="A TOML file of run settings (the keys of a "
              "compare [[models]] entry, or `diffkit config show` output); flags override it.")
@click.option("--steps", type=int, help="Optimizer steps in total." + config_default("steps"))
@click.option("--batch-size", type=int, help="Global batch size (split over torchrun's processes)."
              + config_default("batch_size"))
@click.option("--lr", type=float, help="Adam learning rate." + config_default("lr"))
@click.option("--ema-decay", type=float, help="Decay of the weights' moving average." + config_default("ema_decay"))
@click.option("--checkpoint-every", type=int, help="Checkpoint every K steps (and at the end)."
              + config_default("checkpoint_every"))
@click.option("--keep-checkpoints", type=int, help="Complete checkpoints kept (a corrupt newest falls back to the "
              "one before)." + config_default("keep_checkpoints"))
@click.option("--seed", type=click.IntRange(0, 2**32 - 1),
              help="Seed of initialisation, batches and noise." + config_default("seed"))
@click.option("--dataset", type=click.Choice(sorted(DATASET_NAMES)), help=config_default("dataset").strip())
@click.option("--conditional", is_flag=True, help="Class-conditional: the network sees each image's label, so "
              "`diffkit sample --class 7 --guidance 2` can ask for a digit.")
@click.option("--cond-dropout", type=float, help="How often a conditional run trains on the null label instead, "
              "for guidance." + config_default("cond_dropout"))
@data_root_option
@click.option("--out", "run_dir", required=True, type=click.Path(), help="Run directory to create.")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint.")
@device_options(None, "Autocast precision of network calls; default: the run's own when resuming, else auto "
                      "(bf16 on GPUs that support it, fp32 elsewhere).")
@click.option("--compile", "compile_", is_flag=True, help="torch.compile the network (pays off on GPUs).")
def train(degradation, network, sampler, assignments, preset, config_file, steps, batch_size, lr, ema_decay,
          checkpoint_every, keep_checkpoints, seed, dataset, conditional, cond_dropout, data_root, run_dir, resume,
          device, precision, compile_):
    """Train a model and write checkpoints to RUN_DIR (several processes: torchrun ... -m diffkit train)."""
    from diffkit.api import train as run_training
    from diffkit.atomic import check_writable

    check_writable(run_dir, "--out", folder=True)
    flags = dict(degradation=degradation, network=network, sampler=sampler, steps=steps, batch_size=batch_size,
                 lr=lr, ema_decay=ema_decay, checkpoint_every=checkpoint_every, keep_checkpoints=keep_checkpoints,
                 seed=seed, dataset=dataset,
                 conditional=True if conditional else None, cond_dropout=cond_dropout)
    settings = {}
    if config_file:
        if resume:
            raise DiffkitError("--resume continues with the run's saved config; --config cannot change it")
        settings = read_run_file(config_file)
        preset = preset or settings.pop("preset", None)
        precision = precision or settings.pop("precision", None)
        compile_ = compile_ or strict_bool(settings.pop("compile", False), f"{config_file}: compile")
        if precision is not None and precision not in PRECISIONS:
            raise DiffkitError(f"{config_file}: precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    for key, value in flags.items():
        if value is not None:
            settings[key] = value
    run = run_training(run_dir, preset=preset, options=list(assignments), resume=resume, device=device,
                       precision=precision, compile=compile_, data_root=data_root, console=console, **settings)
    console.print(f"[green]trained[/] {run.step} steps on {run.device} ({run.precision}) -> {escape(str(run_dir))}")


@cli.group()
def new():
    """Start something new from a template."""


@new.command("plugin")
@click.argument("name")
@click.option("--out", "parent", default=".", show_default=True, type=click.Path(), help="Folder to write it in.")
def new_plugin(name, parent):
    """Write diffkit-NAME/: a plugin package with a degradation, its entry point, a test and a README."""
    from diffkit.scaffold import new_plugin as write

    folder = write(name, parent)
    advice = f'{folder}: pip install -e "{folder}[test]" && pytest {folder}'
    console.print(f"[green]wrote[/] {escape(advice)}")


def strict_bool(value, what):
    """true/false from a TOML boolean or the strings "true"/"false": never Python's bool("false") == True."""
    from diffkit.options import convert

    return convert(value, bool, what)


def read_run_file(path):
    """Run settings from a TOML file: RunConfig keys and `preset`; a compare entry's name and samplers are ignored."""
    from diffkit.config import read_toml

    return {k: v for k, v in read_toml(path, "run config").items() if k not in ("name", "samplers", "seeds", "budgets")}


@cli.command()
@click.argument("run_dir", type=click.Path())
@click.option("-n", "count", type=int, default=64, show_default=True, help="Number of images.")
@click.option("--sampler", help="Sampler name (default: the run's).")
@click.option("-o", "--option", "assignments", multiple=True, metavar="KEY=VALUE", help="Sampler option [default: the run's when its sampler is used].")
@click.option("--steps", type=int, help="Sampling steps (default: the run's, else the sampler's).")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True)
@click.option("--batch-size", type=int, default=256, show_default=True)
@click.option("--out", "out", required=True, type=click.Path(), help="Output .npz (images: uint8 N×H×W).")
@click.option("--grid", type=click.Path(), help="Also write a PNG grid of the first 100 images (of a conditional "
              "run's: one class a row) [default: none].")
@click.option("--trajectory", type=click.Path(), help="Also write the reverse path x_T -> x_0 of 8 samples as PNG [default: none].")
@click.option("--class", "--classes", "classes", metavar="C", help="Conditional runs: the class to draw (7), several "
              "(3,7), all (balanced, the default) or none (unconditional, the null label).")
@click.option("--guidance", type=float, default=0.0, show_default=True, help="Classifier-free guidance scale w for a "
              "conditional run: cond + w·(cond − uncond); 0 is the conditional model alone, w > 0 costs 2 NFE a step.")
@device_options()
def sample(run_dir, count, sampler, assignments, steps, seed, batch_size, out, grid, trajectory, classes, guidance,
           device, precision):
    """Sample images from a trained run (EMA weights, prior draws only; torchrun splits the batches)."""
    from diffkit import distributed
    from diffkit.atomic import check_writable
    from diffkit.images import check_png, class_rows, save_grid
    from diffkit.run import Run
    from diffkit.samples import batches_folder, discard_batches

    if not str(out).endswith(".npz"):
        raise DiffkitError(f"--out must be a .npz file, got {out}")
    for option, path in (("--out", out), ("--grid", grid), ("--trajectory", trajectory)):
        if path:
            check_writable(path, option)
            if option != "--out":
                check_png(path, option)
    run = Run.load(run_dir, device, precision)
    distributed.setup(run.device)
    options = split_assignments(assignments) if assignments or sampler else None
    samples = run.sample(count, sampler, options, steps, seed, batch_size, trajectory=8 if trajectory else 0,
                         console=console, classes=classes, guidance=guidance, batches=batches_folder(out))
    if distributed.is_main():
        samples.save(out)
        if grid:
            save_grid(grid, *class_rows(samples.images, samples.labels))
        if trajectory:
            images, frames = samples.path_grid()
            save_grid(trajectory, images, nrow=frames)
    discard_batches(out)
    meta = samples.meta
    merged = f" run as {meta['jumps']} distinct jumps (the spacing merges integer timesteps)" \
        if meta["jumps"] != meta["steps"] else ""
    guided = f", guidance {meta['guidance']:g}" if meta.get("guidance") else ""
    console.print(f"[green]wrote[/] {count} images ({meta['sampler']}, {meta['steps']} steps{merged}, {meta['nfe']} NFE"
                  f"{guided}, {meta['device']}) -> {escape(str(out))}")


@cli.command()
@click.option("-d", "--degradation", required=True, help="Degradation name.")
@click.option("-o", "--option", "assignments", multiple=True, metavar="KEY=VALUE", help="Degradation option [default: the degradation's; see `diffkit list`].")
@click.option("--grid", required=True, type=click.Path(), help="PNG: one row per image, x_0 ... x_T left to right.")
@click.option("-n", "count", type=int, default=8, show_default=True, help="Real digits to degrade.")
@click.option("--frames", type=int, default=11, show_default=True, help="Columns from t = 0 to t = T.")
@click.option("--dataset", type=click.Choice(sorted(DATASET_NAMES)), default="mnist", show_default=True)
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True)
@data_root_option
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps.")
def degrade(degradation, assignments, grid, count, frames, dataset, seed, data_root, device):
    """Show the forward process D(x0, t) on real test digits."""
    import torch

    from diffkit import draws
    from diffkit.atomic import check_writable
    from diffkit.data import load_images, to_model_range, to_uint8
    from diffkit.device import resolve_device
    from diffkit.images import check_png, save_grid
    from diffkit.run import DATASET_SHAPES, build_degradation

    if not 1 <= count <= 1000 or not 2 <= frames <= 1000:
        raise DiffkitError("-n must be in 1..1000 and --frames in 2..1000")
    check_writable(grid, "--grid")
    check_png(grid, "--grid")
    device = resolve_device(device)
    _, d = build_degradation(degradation, split_assignments(assignments), DATASET_SHAPES[dataset])
    x0 = to_model_range(load_images(dataset, "test", data_root)[:count]).to(device)
    g = torch.Generator().manual_seed(seed)
    params = draws.to_device(d.draw_params(count, g), device)
    steps = torch.linspace(0, d.T, frames, device="cpu").round().long().tolist()
    columns = [d.degrade(x0, torch.full((count,), t, device=device), g, params=params) for t in steps]
    save_grid(grid, to_uint8(torch.stack(columns, dim=1).flatten(0, 1)).cpu(), nrow=frames)
    console.print(f"[green]wrote[/] {escape(str(grid))}: {count} digits × t = {', '.join(map(str, steps))}")


@cli.group()
def config():
    """Run configurations: show one as TOML, to read it or to train it again with --config."""


@config.command("show")
@click.argument("run_dir", type=click.Path())
def config_show(run_dir):
    """Print RUN_DIR's resolved config as TOML (`diffkit train --config` reads it back)."""
    import tomli_w

    from diffkit.checkpoint import load_checkpoint

    _, state = load_checkpoint(run_dir)
    values = {k: v for k, v in state["config"].items() if v is not None}
    try:
        text = tomli_w.dumps(values)
    except (TypeError, ValueError) as exc:
        raise DiffkitError(f"{run_dir}: its saved config holds a value TOML cannot write ({exc}); its state.json "
                           f"was damaged or edited") from None
    click.echo(text, nl=False)


def _number(value):
    """A number read from a run folder, or None: a hand-edited or damaged state.json shows blank, never crashes."""
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


@cli.command("runs")
@click.argument("folder", type=click.Path(exists=True, file_okay=False), default=".")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def runs_command(folder, as_json):
    """The runs below FOLDER (a compare report folder too) from what is on disk: components, steps, training
    time and, in a report folder, each run's best FID."""
    from diffkit.checkpoint import read_state

    scores = manager().hook.best_scores(folder=Path(folder)) or {}
    found = []
    for latest in sorted(Path(folder).glob("**/checkpoints/latest")):
        run_dir = latest.parent.parent
        try:
            state = read_state(run_dir)
        except (OSError, ValueError):
            state = None
        if not isinstance(state, dict) or not isinstance(state.get("config"), dict):
            continue
        c, best = state["config"], scores.get(run_dir.name)
        found.append({"run": str(run_dir), "degradation": c.get("degradation"), "network": c.get("network"),
                      "sampler": c.get("sampler"), "step": _number(state.get("step")), "steps": _number(c.get("steps")),
                      "train_seconds": _number(state.get("train_seconds")), "device": state.get("device"),
                      "best_fid": best and best["fid"], "best_pair": best and best.get("label")})
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    table = Table("run", "degradation", "network", "sampler", "steps", "train s", "device", "best FID")
    for r in found:
        fid = "" if r["best_fid"] is None else f"{r['best_fid']:.1f} ({r['best_pair']})"
        seconds = "" if r["train_seconds"] is None else f"{r['train_seconds']:.0f}"
        table.add_row(*(escape(str(v)) for v in (r["run"], r["degradation"], r["network"], r["sampler"],
                                                  f"{r['step']}/{r['steps']}", seconds, r["device"] or "", fid)))
    table_console().print(table)


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
    table_console().print(table)


@cli.command("list")
@click.argument("kind", type=click.Choice(KINDS))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_command(kind, as_json):
    """Components of one kind with their options, defaults and help."""
    found = sorted(components(kind).items())
    if as_json:
        click.echo(json.dumps([{"name": name, "plugin": c.plugin, "distribution": c.distribution, "version": c.version,
                                "description": c.cls.description,
                                "options": [{"name": k, "type": t, "default": d, "help": h}
                                            for k, t, d, h in describe(c.cls.Options)]}
                               for name, c in found], indent=2, default=str))
        return
    table = Table("name", "options (type = default)", "plugin", "description")
    for name, c in found:
        opts = "\n".join(f"{k}: {t} = {d}" + (f" ({h})" if h else "") for k, t, d, h in describe(c.cls.Options)) or "-"
        table.add_row(name, escape(opts), escape(f"{c.plugin} ({c.distribution} {c.version})"), escape(c.cls.description))
    table_console().print(table)


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
    except Interrupted as exc:  # training was stopped and saved: say so, exit 128 + the signal
        console.print(f"[yellow]{exc}")
        sys.exit(exc.exit_code)
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
        from diffkit import distributed

        reason = distributed.peer_lost(exc)
        if reason:
            _fail(f"rank {distributed.rank()}: another process of this torchrun job stopped ({reason}); run the same "
                  f"command again (torchrun's own report follows)", 1)
        _fail(f"unexpected {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} "
              f"(a bug in diffkit or a plugin; run with DIFFKIT_DEBUG=1 for the traceback)", 1)
    sys.exit(code if isinstance(code, int) else 0)
