"""`diffkit evaluate`, `diffkit compare` and `diffkit restore`, added through register_commands."""

import json
from pathlib import Path

import click
from rich.console import Console

from rich.markup import escape

from diffkit import distributed
from diffkit.atomic import check_writable, write_text
from diffkit.cli import data_root_option, device_options, table_console
from diffkit.errors import DiffkitError, Interrupted
from diffkit.runlock import run_lock

console = Console(stderr=True, quiet=not distributed.is_main())


def features_options(command):
    """--features and --space-option, shared by the commands that score."""
    command = click.option("--space-option", "space_options", multiple=True, metavar="SPACE.KEY=VALUE",
                           help="An option of a feature space, e.g. inception-v3.weights=PATH.")(command)
    return click.option("--features", default="classifier,autoencoder", show_default=True,
                        help="The feature spaces to score in: the first gives FID, KID, precision/recall and "
                             "coverage; a second gives a second FID (`diffkit list feature_spaces`).")(command)


def space_options_of(assignments):
    """{"inception-v3": {"weights": PATH}} from ["inception-v3.weights=PATH"]."""
    from diffkit.options import split_assignments

    found = {}
    for key, value in split_assignments(assignments).items():
        space, sep, option = key.rpartition(".")
        if not sep or not space or not option:
            raise DiffkitError(f"--space-option {key}={value}: write SPACE.KEY=VALUE, e.g. inception-v3.weights=PATH")
        found.setdefault(space, {})[option] = value
    return found


def evaluate_command(cli):
    @cli.command()
    @click.argument("source", type=click.Path())
    @click.option("--ref", "split", default="test", show_default=True, help="Reference split (held-out test by default).")
    @click.option("-n", "count", type=int, help="Use the first N images (run directory: sample N) [default: all; 10,000 from a run].")
    @click.option("--range", "value_range", help="Pixel range of float arrays: 0,1, 0,255 or -1,1 [default: told "
                  "from the values where it can be; uint8 and PNG are 0..255].")
    @click.option("--sampler", help="Sampler, when SOURCE is a run directory [default: the run's].")
    @click.option("--steps", type=int, help="Sampling steps, when SOURCE is a run directory [default: the run's, "
                  "else the sampler's].")
    @click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True)
    @click.option("--dataset", default="mnist", show_default=True)
    @data_root_option
    @features_options
    @click.option("--json", "json_out", type=click.Path(), help="Also write the scorecard as JSON [default: none].")
    @click.option("--guidance", type=float, default=0.0, show_default=True,
                  help="Guidance scale when SOURCE is a conditional run (its samples draw every class, balanced).")
    @device_options()
    def evaluate(source, split, count, value_range, sampler, steps, seed, dataset, data_root, features, space_options,
                 json_out, guidance, device, precision):
        """Score SOURCE against real held-out images: a run directory, diffkit's samples .npz, any .npy/.npz array
        of images, or a folder of PNG/JPEG images (another toolkit's samples are scored exactly like diffkit's)."""
        from diffkit.run import Run
        from diffkit_eval.evaluate import Evaluator, parse_features, scorecard_table
        from diffkit_eval.inputs import parse_range, read_images
        from diffkit_eval.metrics import plain

        if count is not None and not 1 <= count <= 1_000_000:
            raise DiffkitError(f"-n must be a positive integer up to 1,000,000, got {count}")
        if split not in ("test", "train"):
            raise DiffkitError(f"unknown reference split {split!r}; choose test or train")
        parse_range(value_range)
        names, options = parse_features(features), space_options_of(space_options)
        if json_out:
            check_writable(json_out, "--json")
        if (Path(source) / "checkpoints").is_dir():
            run = Run.load(source, device, precision)
            dataset = run.config.dataset
            samples = run.sample(count or 10_000, sampler, None, steps, seed, console=console, guidance=guidance)
            images, meta, labels = samples.images, {**samples.meta, "run_dir": str(source)}, samples.labels
        else:
            if guidance:
                raise DiffkitError("--guidance applies when SOURCE is a conditional run directory, which it samples")
            images, meta, labels = read_images(source, count, value_range)
            if count is not None and count > len(images):
                raise DiffkitError(f"-n {count} exceeds the {len(images)} images in {source}")
        evaluator = Evaluator(dataset, split, data_root, console, device, names, options)
        result = evaluator.score(images, meta, seed, labels=labels)
        table_console().print(scorecard_table(result, title=f"diffkit evaluate {escape(str(source))}"))
        if json_out:
            write_text(json_out, json.dumps(plain(result), indent=2))


def compare_command(cli):
    @cli.command()
    @click.argument("config", type=click.Path())
    @click.option("--out", "out_dir", required=True, type=click.Path(), help="Report directory (runs and samples are kept there).")
    @data_root_option
    @click.option("--device", help="auto, cpu, cuda, cuda:N or mps (default: [compare] device, else auto).")
    @click.option("--executor", type=click.Choice(["local", "slurm", "ray"]),
                  help="Where the cells run [default: [executor] name, else local].")
    @click.option("--jobs", type=int, help="local: cells at once, the CPU cores split between them [default: "
                                           "[executor] jobs, else 1].")
    @click.option("--plan", "show_plan", is_flag=True, help="Print the cells, what each needs and costs; run nothing.")
    @click.option("--status", "show_status", is_flag=True, help="Print the state of every cell of a sweep in --out "
                                                                "(running here or elsewhere); run nothing.")
    def compare(config, out_dir, data_root, device, executor, jobs, show_plan, show_status):
        """Train, sample and score every model × sampler in CONFIG.toml; write a report to --out.

        The work is split into cells (train, sample, score), each run once: the same command after a stop or a
        failure runs only what is left. Under torchrun, training and sampling use every process; rank 0 scores
        and writes the report."""
        from diffkit.atomic import refuse_link
        from diffkit.device import resolve_device
        from diffkit_eval.cells import evaluator_for, is_done, plan, plan_table, status_table
        from diffkit_eval.compare import gather, read_config
        from diffkit_eval.executors import executor_for, executor_settings, make_tasks, run_sweep
        from diffkit_eval.report import write_report

        settings, runs, pairs = read_config(config)
        chosen = executor_settings(config, executor, jobs)
        cells = plan(settings, runs, pairs)
        if show_plan or show_status:
            show = plan_table if show_plan else status_table
            table_console().print(show(cells, out_dir, f"diffkit compare {escape(str(config))} "
                                                       f"({'plan' if show_plan else 'status'})"))
            return
        check_writable(out_dir, "--out", folder=True)
        settings["device"] = device = device or settings["device"]
        resolve_device(device)  # an unknown or absent device fails before anything trains
        for folder in ("runs", "samples", "cache", "figures", "pairs", "cells"):
            refuse_link(Path(out_dir) / folder, folder)
        with run_lock(out_dir, "report folder", remove_if_refused=False):  # one compare per folder: a second one is one line
            runner = executor_for(chosen, out_dir, console, sum(not is_done(out_dir, c) for c in cells))
            task_of = make_tasks(config, out_dir, data_root, device, chosen, runner)
            try:
                records = run_sweep(cells, task_of, runner, out_dir, console)
            except Interrupted as exc:  # compare has no --resume: it picks up where it stopped by itself
                raise Interrupted(exc.step, exc.exit_code - 128, "run the same diffkit compare command again to "
                                  "finish (finished cells are reused)", exc.message) from None
            if not distributed.is_main():  # not rank 0: its share of the work is done
                return
            failures = [{"cell": c.id, "kind": c.kind, "name": c.name, "error": records[c.id].get("error", "")}
                        for c in cells if records[c.id]["state"] == "failed"]
            failed = {f["name"] for f in failures}
            fresh = {c.name for c in cells if c.kind == "sample" and not records[c.id].get("earlier")
                     and not records[c.id].get("reused")}
            evaluator = evaluator_for(settings, data_root, device, console)
            comparison = gather(settings, runs, pairs, out_dir, evaluator, failed, fresh, console)
            comparison["failures"] = failures
            rows = [r for r in write_report(comparison) if not r["reference_row"]]
        if rows:
            best = min(rows, key=lambda r: r["fid"])
            console.print(f"[green]wrote[/] {escape(str(out_dir))}/report.html and report.md ({len(rows)} pairs; best "
                          f"FID {best['fid']:.2f} ± {best['fid_std']:.2f}: {escape(best['label'])})")
        if failures:
            raise DiffkitError(f"{len(failures)} of {len(cells)} cells failed (the report lists them; first: "
                               f"{failures[0]['cell']}: {failures[0]['error']}); fix it and run the same command "
                               f"to run only what is left")


def restore_command(cli):
    @cli.command()
    @click.argument("run_dir", type=click.Path())
    @click.option("--split", default="test", show_default=True, help="Real images to degrade and restore.")
    @click.option("-n", "count", type=int, default=10_000, show_default=True)
    @click.option("--sampler", help="Sampler for the 'sampled' restoration (default: the run's).")
    @click.option("--steps", type=int, help="Steps of the sampled restoration [default: the run's, else the sampler's].")
    @click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True)
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


def validate_command(cli):
    @cli.command("validate-metrics")
    @click.option("-n", "count", type=int, default=2000, show_default=True, help="Images per set (at most 5,000: "
                  "half the test split).")
    @click.option("--degradations", default="blur,gaussian,mask,pixelate,fade", show_default=True,
                  help="Built-in (or plugin) degradations to degrade real digits with.")
    @click.option("--features", default="classifier,autoencoder", show_default=True,
                  help="The feature spaces to validate, each in turn.")
    @click.option("--dataset", default="mnist", show_default=True)
    @click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True)
    @data_root_option
    @click.option("--json", "json_out", type=click.Path(), help="Also write the tables and checks as JSON [default: none].")
    @click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps.")
    def validate_metrics(count, degradations, features, dataset, seed, data_root, json_out, device):
        """Check that every metric moves the right way as real digits are degraded, collapsed or copied (a finding,
        not an error: the command exits 0 and lists the checks that moved the wrong way)."""
        from rich.table import Table

        from diffkit_eval.metrics import plain
        from diffkit_eval.validate import validate_space

        if not 10 <= count <= 5000:
            raise DiffkitError(f"-n must be between 10 and 5,000 (half the test split), got {count}")
        names = [d.strip() for d in degradations.split(",") if d.strip()]
        spaces = [s.strip() for s in features.split(",") if s.strip()]
        if not names or not spaces:
            raise DiffkitError("--degradations and --features each need at least one name")
        if json_out:
            check_writable(json_out, "--json")
        record, failures = {"n": count, "spaces": {}, "checks": []}, []
        for space in spaces:
            version, rows, checks = validate_space(space, count, names, dataset, data_root, console, device, seed)
            keys = ["fid", "kid", "precision", "recall", "coverage", "nn_distance_ratio", "authenticity"]
            table = Table("set", *keys, title=f"validate-metrics in {version} (N = {count} vs the test split's "
                                               f"odd-numbered half)")
            for label, metrics in rows:
                table.add_row(label, *(f"{metrics[k].value:.4g} ± {metrics[k].std:.2g}" for k in keys))
            table_console().print(table)
            for check in checks:
                mark = "[green]right way[/]" if check["passed"] else f"[red]wrong way: {', '.join(check['wrong'])}[/]"
                table_console().print(f"  {check['name']}: {mark}")
                if not check["passed"]:
                    failures.append(f"{version}/{check['name']}: {', '.join(check['wrong'])}")
            record["spaces"][version] = [{"set": label, **plain(metrics)} for label, metrics in rows]
            record["checks"] += [{**c, "space": version} for c in checks]
        record["failures"] = failures
        if json_out:
            write_text(json_out, json.dumps(record, indent=2))
        passed = len(record["checks"]) - len(failures)
        console.print(f"{passed} of {len(record['checks'])} checks moved the right way"
                      + (f"; [yellow]the wrong way: {escape('; '.join(failures))}[/]" if failures else ""))


def features_command(cli):
    @cli.group()
    def features():
        """diffkit's feature spaces: the shipped ones are listed by `diffkit list feature_spaces`."""

    @features.command("train")
    @click.option("--dataset", required=True, help="The dataset whose training split the spaces learn.")
    @click.option("--out", "out_dir", required=True, type=click.Path(), help="Folder for the two weights files.")
    @data_root_option
    @click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps.")
    def train_features(dataset, out_dir, data_root, device):
        """Train a classifier and an autoencoder space for a dataset without shipped weights. Each file is named
        after its own weights (DATASET-local-HASH): scores in it are other numbers than the shipped spaces'."""
        from diffkit.device import resolve_device
        from diffkit_eval.spaces import KINDS, local_name, save_space, train_space

        check_writable(out_dir, "--out", folder=True)
        device = resolve_device(device)
        for kind in KINDS:
            model, info = train_space(kind, dataset, data_root, console, device)
            name = local_name(kind, dataset, info)
            path = Path(out_dir) / f"{name}.safetensors"
            save_space(path, model, {**info, "name": name})
            console.print(f"[green]wrote[/] {escape(str(path))}; score in it with --features {kind} "
                          f"--space-option {kind}.weights={escape(str(path))}")


def register(cli):
    evaluate_command(cli)
    features_command(cli)
    validate_command(cli)
    compare_command(cli)
    restore_command(cli)
