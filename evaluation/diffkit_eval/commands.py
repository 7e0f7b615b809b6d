"""`diffkit evaluate`, `diffkit compare` and `diffkit restore`, added through register_commands."""

import json
from pathlib import Path

import click
from rich.console import Console

from rich.markup import escape

from diffkit import distributed
from diffkit.atomic import check_writable, write_text
from diffkit.cli import data_root_option, device_options, table_console
from diffkit.errors import DiffkitError

console = Console(stderr=True, quiet=not distributed.is_main())


def evaluate_command(cli):
    @cli.command()
    @click.argument("source", type=click.Path())
    @click.option("--ref", "split", default="test", show_default=True, help="Reference split (held-out test by default).")
    @click.option("-n", "count", type=int, help="Use the first N samples (run directory: sample N) [default: all; 10,000 from a run].")
    @click.option("--sampler", help="Sampler, when SOURCE is a run directory [default: the run's].")
    @click.option("--steps", type=int, help="Sampling steps, when SOURCE is a run directory [default: the run's, "
                  "else the sampler's].")
    @click.option("--seed", type=int, default=0, show_default=True)
    @click.option("--dataset", default="mnist", show_default=True)
    @data_root_option
    @click.option("--json", "json_out", type=click.Path(), help="Also write the scorecard as JSON [default: none].")
    @device_options()
    def evaluate(source, split, count, sampler, steps, seed, dataset, data_root, json_out, device, precision):
        """Score SOURCE (a samples .npz or a run directory) against real held-out images."""
        from diffkit.generate import load_samples
        from diffkit.run import Run
        from diffkit_eval.evaluate import Evaluator, scorecard_table
        from diffkit_eval.metrics import plain

        if count is not None and not 1 <= count <= 1_000_000:
            raise DiffkitError(f"-n must be a positive integer up to 1,000,000, got {count}")
        if split not in ("test", "train"):
            raise DiffkitError(f"unknown reference split {split!r}; choose test or train")
        if json_out:
            check_writable(json_out, "--json")
        if Path(source).is_dir():
            run = Run.load(source, device, precision)
            dataset = run.config.dataset
            samples = run.sample(count or 10_000, sampler, None, steps, seed, console=console)
            images, meta = samples.images, {**samples.meta, "run_dir": str(source)}
        else:
            images, meta = load_samples(source)
            if count is not None:
                if count > len(images):
                    raise DiffkitError(f"-n {count} exceeds the {len(images)} images in {source}")
                images = images[:count]
        evaluator = Evaluator(dataset, split, data_root, console, device)
        result = evaluator.score(images, meta, seed)
        table_console().print(scorecard_table(result, title=f"diffkit evaluate {escape(str(source))}"))
        if json_out:
            write_text(json_out, json.dumps(plain(result), indent=2))


def compare_command(cli):
    @cli.command()
    @click.argument("config", type=click.Path())
    @click.option("--out", "out_dir", required=True, type=click.Path(), help="Report directory (runs and samples are kept there).")
    @data_root_option
    @click.option("--device", help="auto, cpu, cuda, cuda:N or mps (default: [compare] device, else auto).")
    def compare(config, out_dir, data_root, device):
        """Train, sample and score every model × sampler in CONFIG.toml; write a report to --out.

        Under torchrun, training and sampling use every process; rank 0 scores and writes the report."""
        from diffkit_eval.compare import run_comparison
        from diffkit_eval.report import write_report

        check_writable(out_dir, "--out", folder=True)
        comparison = run_comparison(config, out_dir, data_root, console, device)
        if comparison is None:  # not rank 0: its share of the work is done
            return
        rows = [r for r in write_report(comparison) if not r["reference_row"]]
        best = min(rows, key=lambda r: r["fid"])
        console.print(f"[green]wrote[/] {escape(str(out_dir))}/report.html and report.md ({len(rows)} pairs; best FID "
                      f"{best['fid']:.2f} ± {best['fid_std']:.2f}: {escape(best['label'])})")


def restore_command(cli):
    @cli.command()
    @click.argument("run_dir", type=click.Path())
    @click.option("--split", default="test", show_default=True, help="Real images to degrade and restore.")
    @click.option("-n", "count", type=int, default=10_000, show_default=True)
    @click.option("--sampler", help="Sampler for the 'sampled' restoration (default: the run's).")
    @click.option("--steps", type=int, help="Steps of the sampled restoration [default: the run's, else the sampler's].")
    @click.option("--seed", type=int, default=0, show_default=True)
    @data_root_option
    @click.option("--json", "json_out", type=click.Path(), help="Also write the figures as JSON [default: none].")
    @click.option("--grid", type=click.Path(), help="PNG: rows of originals, degraded, direct, sampled [default: none].")
    @device_options()
    def restore(run_dir, split, count, sampler, steps, seed, data_root, json_out, grid, device, precision):
        """Restore degraded REAL images (not generation): RMSE, SSIM and FID of direct and sampled restoration."""
        import torch
        from rich.table import Table

        from diffkit.data import load_images
        from diffkit.images import save_grid
        from diffkit.run import Run
        from diffkit_eval.evaluate import Evaluator
        from diffkit_eval.metrics import plain
        from diffkit_eval.restore import restore as run_restore

        if not 10 <= count <= 1_000_000:
            raise DiffkitError(f"-n must be between 10 and 1,000,000, got {count}")
        if split not in ("test", "train"):
            raise DiffkitError(f"unknown split {split!r}; choose test or train")
        for option, path in (("--json", json_out), ("--grid", grid)):
            if path:
                check_writable(path, option)
        run = Run.load(run_dir, device, precision)
        run.plan(sampler, None, steps)  # a bad sampler or step count fails before any work
        evaluator = Evaluator(run.config.dataset, "test", data_root, console, run.device)
        result, info = run_restore(run, evaluator, count, sampler, steps, seed, split, data_root)
        table = Table("restoration of real images", "RMSE", "SSIM", "FID vs test",
                      title=f"diffkit restore {escape(str(run_dir))}",
                      caption=f"N = {info['n']} {split} images degraded to t = T; sampled = {info['sampler']} × {info['steps']}")
        for kind, m in result.items():
            table.add_row(kind, str(m["rmse"]), str(m["ssim"]), str(m["fid"]))
        table_console().print(table)
        if grid:
            originals = load_images(run.config.dataset, split, data_root)[:8]
            save_grid(grid, torch.cat([originals] + [m["images"] for m in result.values()]), nrow=8)
        if json_out:
            record = {"info": info, **{k: {m: v for m, v in r.items() if m != "images"} for k, r in result.items()}}
            write_text(json_out, json.dumps(plain(record), indent=2))


def register(cli):
    evaluate_command(cli)
    compare_command(cli)
    restore_command(cli)
