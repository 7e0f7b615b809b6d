"""A comparison as cells: train (model, seed), sample (run, budget, sampler, steps, N, seed), score (one set of
images in the feature spaces), then the report. Each cell is a pure function of its inputs, named by a hash of
them, and leaves a record, REPORT_DIR/cells/<kind>-<name>-<hash>.json, saying queued work apart:

    {"state": "running" | "done" | "failed", "seconds": ..., "error": "one line", "host": ..., ...}

A cell whose record says done is never run again; a changed config, sampler, N, seed or plugin (its version and,
for samples and scores, its source hash: an edited degradation resamples but does not retrain, with a warning)
changes the hash, so the cell is new. A failed cell's dependants are
not run; every other cell goes on, and the same command runs what is left. Any executor (diffkit_eval.executors)
runs a cell by its id alone: `execute` rebuilds the plan from the config file and runs the one cell.
"""

import hashlib
import json
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from diffkit import __version__, distributed
from diffkit.atomic import write_text
from diffkit.checkpoint import has_checkpoint
from diffkit.device import resolve_device
from diffkit.errors import DiffkitError, Interrupted
from diffkit.plugins import get_component, manager, provenance, source_sha256
from diffkit_eval import compare
from diffkit_eval.metrics import Estimate

STAGES = ("train", "sample", "score")


@dataclass
class Cell:
    kind: str  # train | sample | score
    name: str  # the run, the pair's slug, an imported set or a reference row
    key: str  # sha256 of everything that decides its output
    needs: list = field(default_factory=list)  # ids of the cells whose outputs it reads

    @property
    def id(self):
        return f"{self.kind}-{self.name}-{self.key[:12]}"


def digest(value):
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def versions_only(code):
    """A component's `distribution version` without its source hash: a training cell is keyed on versions, so
    an edit to a plugin's source warns (ensure_trained) rather than retrains every model."""
    return {k: v.split(" source ")[0] for k, v in code.items()}


def plan(settings, runs, pairs):
    """The cells of a comparison in the order they can run: every train, sample and score cell."""
    cells, trained, components = [], {}, {}
    for name, config in runs.items():
        components[name] = [get_component("degradations", config.degradation), get_component("networks", config.network)]
        key = digest({"config": compare.training_fields(config), "steps": config.steps, "diffkit": __version__,
                      "code": versions_only(provenance(*components[name]))})
        trained[name] = Cell("train", name, key)
    cells += trained.values()
    request = {k: settings[k] for k in ("samples", "seed")}
    scoring = {k: settings[k] for k in ("features", "space_options", "reference", "dataset", "samples", "seed")}
    scoring["code"] = {"diffkit_eval": source_sha256("diffkit_eval")[:12], "diffkit": __version__}
    for pair in pairs:
        for _, run in pair.runs:
            if pair.source is not None:
                source = Path(pair.source)
                stamp = [source.stat().st_size, source.stat().st_mtime_ns] if source.is_file() else \
                    sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in source.iterdir())
                cells.append(Cell("score", pair.slug(run), digest({**scoring, "source": str(source), "stamp": stamp,
                                                                   "range": pair.value_range})))
                continue
            sampler = get_component("samplers", pair.sampler)
            key = digest({"train": trained[run].key, "budget": pair.budget, "sampler": pair.sampler, "steps": pair.steps,
                          "options": pair.options, "guidance": pair.guidance, **request,
                          "code": {"diffkit": source_sha256("diffkit")[:12], **provenance(*components[run], sampler)}})
            sample = Cell("sample", pair.slug(run), key, [trained[run].id])
            cells += [sample, Cell("score", pair.slug(run), digest({**scoring, "samples": key}), [sample.id])]
    cells += [Cell("score", name, digest({**scoring, "row": name})) for name in (compare.FLOOR, compare.COPY)]
    return cells


# --- records -------------------------------------------------------------------------------------------------

def record_path(out_dir, cell_id):
    return Path(out_dir) / "cells" / f"{cell_id}.json"


def read_record(out_dir, cell_id):
    """A cell's record, or None (never run, or a record that does not read: then it runs again)."""
    try:
        record = json.loads(record_path(out_dir, cell_id).read_text())
        return record if isinstance(record, dict) and record.get("state") in ("running", "done", "failed") else None
    except (OSError, ValueError):
        return None


def write_record(out_dir, cell, **fields):
    if distributed.is_main():
        write_text(record_path(out_dir, cell.id), json.dumps({"id": cell.id, "kind": cell.kind, "name": cell.name,
                                                              "key": cell.key, **fields}, indent=2))


def is_done(out_dir, cell):
    """Whether the cell's record says done and its output is still there (a deleted run or samples file runs
    its cell again)."""
    record = read_record(out_dir, cell.id)
    if record is None or record["state"] != "done":
        return False
    if cell.kind == "train":
        return has_checkpoint(Path(out_dir) / "runs" / cell.name)
    return cell.kind != "sample" or (Path(out_dir) / "samples" / f"{cell.name}.npz").is_file()


# --- running one cell --------------------------------------------------------------------------------------

_evaluators = {}


def evaluator_for(settings, data_root, device, console):
    """The Evaluator of these settings, built once per process (its references are costly to load)."""
    from diffkit_eval.evaluate import Evaluator

    key = json.dumps([settings["dataset"], settings["reference"], settings["features"], settings["space_options"],
                      str(data_root), str(device)], sort_keys=True, default=str)
    if key not in _evaluators:
        _evaluators[key] = Evaluator(settings["dataset"], settings["reference"], data_root, console, device,
                                     settings["features"], settings["space_options"])
    return _evaluators[key]


@dataclass
class Task:
    """Everything a worker needs to run one cell: small, picklable, the same on any machine that sees the files."""

    config: str
    out_dir: str
    cell: str  # its id
    data_root: str | None = None
    device: str | None = None  # as the user named it: each process resolves it once (its LOCAL_RANK's GPU)
    threads: int | None = None  # torch's CPU threads in this cell (None: leave torch's default)
    quiet: bool = False  # write the cell's console output to cells/<id>.log instead of the terminal
    distributed_env: bool = False  # export torch.distributed's variables from Slurm's (a multi-task training cell)


def execute(task, console=None):
    """Run one cell; returns its record. A cell's own failure (a plugin raising in training, a bad file) is
    recorded, not raised: the other cells go on. Ctrl-C and errors of the machine itself are raised."""
    if task.threads:
        torch.set_num_threads(task.threads)
    if task.distributed_env:
        import submitit

        submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
    out_dir = Path(task.out_dir)
    log = None
    if task.quiet or console is None:
        (out_dir / "cells").mkdir(parents=True, exist_ok=True)
        log = open(out_dir / "cells" / f"{task.cell}.log", "a")
        console = Console(file=log, width=120, quiet=not distributed.is_main())
    try:
        settings, runs, pairs = compare.read_config(task.config)
        settings["device"] = device = task.device or settings["device"]
        cells = {c.id: c for c in plan(settings, runs, pairs)}
        if task.cell not in cells:
            raise DiffkitError(f"no cell {task.cell} in the plan of {task.config} (was the config edited?)")
        cell = cells[task.cell]
        write_record(out_dir, cell, state="running", started=time.time(), host=socket.gethostname(), pid=os.getpid())
        start = time.perf_counter()
        try:
            result = run_cell(cell, settings, runs, pairs, out_dir, task.data_root, resolve_device(device), console)
        except DiffkitError as exc:
            if distributed.active():  # ranks must stay in step: the whole job stops
                raise
            record = {"state": "failed", "error": exc.message, "seconds": time.perf_counter() - start}
        except Interrupted:
            write_record(out_dir, cell, state="failed", error="interrupted", seconds=time.perf_counter() - start)
            raise
        except Exception as exc:  # noqa: BLE001 - a plugin's own bug fails its cell, not the sweep
            if distributed.active():
                raise
            first = (str(exc).strip().splitlines() or [""])[0]
            record = {"state": "failed", "error": f"{type(exc).__name__}: {first}"[:300],
                      "seconds": time.perf_counter() - start}
        else:
            record = {"state": "done", "seconds": time.perf_counter() - start, **result}
        record = {**record, "finished": time.time(), "host": socket.gethostname()}
        write_record(out_dir, cell, **record)
        return {"id": cell.id, "kind": cell.kind, "name": cell.name, **record}
    finally:
        if log is not None:
            log.close()


def run_cell(cell, settings, runs, pairs, out_dir, data_root, device, console):
    """The work of one cell; returns what its record adds (whether its output was reused)."""
    if cell.kind == "train":
        compare.ensure_trained(cell.name, runs[cell.name], out_dir / "runs" / cell.name, data_root, console, device)
        return {}
    pair, run = next(((p, r) for p in pairs for _, r in p.runs if p.slug(r) == cell.name), (None, None))
    if cell.kind == "sample":
        _, meta, _ = compare.ensure_sampled(pair, out_dir / "runs" / run, out_dir / "samples" / f"{cell.name}.npz",
                                            settings["samples"], settings["seed"], console, device, cell.key)
        return {"reused": bool(meta.get("reused"))}
    if not distributed.is_main():
        return {}
    evaluator = evaluator_for(settings, data_root, device, console)
    cache = out_dir / "cache"
    if pair is None:  # a reference row
        _, images, info, floor = next(r for r in compare.reference_rows(evaluator, settings["samples"], settings["seed"])
                                      if r[0] == cell.name)
        evaluator.score_cached(images, info, settings["seed"], cache, floor=floor, console=console)
        return {}
    if pair.source is not None:
        from diffkit_eval.inputs import read_images

        images, meta, labels = compare.imported_set(pair, *read_images(pair.source, settings["samples"],
                                                                       pair.value_range))
    else:
        from diffkit.samples import load_samples

        samples = load_samples(out_dir / "samples" / f"{cell.name}.npz")
        images, meta, labels = samples.images, samples.meta, samples.labels
    _, score, _ = evaluator.score_cached(images, meta, settings["seed"], cache, console=console, labels=labels)
    if pair.source is None:
        manager().hook.log_metrics(run_dir=out_dir / "runs" / run, step=meta["training_step"], metrics={
            f"eval/{pair.slug().split('__', 1)[1]}/{key}": entry.value
            for key, entry in score["metrics"].items() if isinstance(entry, Estimate)})
    console.print(f"scored {escape(pair.label)}: FID {score['metrics']['fid']}")
    return {"fid": score["metrics"]["fid"].value}


# --- what a sweep looks like ---------------------------------------------------------------------------------

def status_table(cells, out_dir, title, live=None):
    """A table of the cells: state (queued when never started, or `live`'s state in this command) and seconds."""
    table = Table("cell", "kind", "state", "seconds", "note", title=title)
    counts = {}
    for cell in cells:
        record = (live or {}).get(cell.id) or read_record(out_dir, cell.id) or {"state": "queued"}
        state = record["state"]
        counts[state] = counts.get(state, 0) + 1
        colour = {"done": "green", "failed": "red", "running": "yellow"}.get(state, "dim")
        seconds = record.get("seconds")
        if state == "running" and record.get("started"):
            seconds = time.time() - record["started"]
        note = record.get("error") or ("from an earlier command" if record.get("earlier") else
                                       "reused its samples" if record.get("reused") else "")
        table.add_row(escape(cell.name), cell.kind, f"[{colour}]{state}[/]",
                      "" if seconds is None else f"{seconds:.1f}", escape(note[:100]))
    table.caption = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
    return table


def plan_table(cells, out_dir, title):
    """`--plan`: every cell, what it needs, whether it is done, and its cost where its own earlier record knows it."""
    table = Table("cell", "kind", "needs", "done", "seconds", title=title)
    left, total, unknown = 0, 0.0, 0
    for cell in cells:
        record, done = read_record(out_dir, cell.id), is_done(out_dir, cell)
        seconds = record.get("seconds") if record else None
        if not done:
            left += 1
            total += seconds or 0.0
            unknown += seconds is None
        table.add_row(escape(cell.id), cell.kind, escape(", ".join(cell.needs)), "yes" if done else "",
                      "?" if seconds is None else f"{seconds:.1f}")
    table.caption = (f"{len(cells)} cells, {left} to run; known cost of those {total:.0f} s"
                     + (f", {unknown} without a recorded time" if unknown else ""))
    return table
