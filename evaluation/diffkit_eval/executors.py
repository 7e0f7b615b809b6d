"""Where a comparison's cells run: `local` (this machine, K cells at once), `slurm` (job arrays through submitit)
or `ray` (tasks on a Ray cluster). Chosen in the config's [executor] table or with --executor/--jobs:

    [executor]
    name = "local"        # local | slurm | ray
    jobs = 2              # local: cells at once, the CPU cores split between them
    cluster = "slurm"     # slurm: submitit's cluster; "local" runs the same jobs as local processes (tests)
    partition = "gpu"     # slurm: partition, minutes per job, extra sbatch options
    time = 240
    sbatch = { account = "lab", qos = "normal" }
    address = "auto"      # ray: ray.init(address=...); leave out for a one-node cluster started here
    cpus = 4              # slurm and ray: CPU cores and GPUs of a cell
    gpus = 1
    train_gpus = 1        # slurm: GPUs of a training cell, one task each, joined by torch.distributed

The scheduler is the same for all three: a cell is submitted when the cells it needs are done; a failed cell's
dependants are not run; the rest go on. Slurm gets one job array per stage (train, sample, score).
"""

import os
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from pathlib import Path

from rich.live import Live
from rich.markup import escape

from diffkit import distributed
from diffkit.config import read_toml
from diffkit.errors import DiffkitError, Interrupted
from diffkit_eval.cells import STAGES, Task, execute, is_done, status_table

NAMES = ("local", "slurm", "ray")
KEYS = {"name": str, "jobs": int, "cluster": str, "partition": str, "time": int, "sbatch": dict, "address": str,
        "cpus": int, "gpus": int, "train_gpus": int}
EXTRAS = {"slurm": "submitit", "ray": "ray"}


def executor_settings(path, name=None, jobs=None):
    """The [executor] table of a comparison config, checked, with --executor and --jobs applied."""
    table = read_toml(path, "comparison config").get("executor", {})
    if not isinstance(table, dict):
        raise DiffkitError(f"{path}: [executor] must be a table")
    for key, value in table.items():
        if key not in KEYS:
            raise DiffkitError(f"{path}: unknown [executor] key {key!r}; known: {', '.join(KEYS)}")
        if not isinstance(value, KEYS[key]) or isinstance(value, bool):
            raise DiffkitError(f"{path}: [executor] {key} must be a{'n integer' if KEYS[key] is int else ' ' + KEYS[key].__name__}")
    settings = {"name": "local", "jobs": 1, "cpus": 1, "gpus": 0, "train_gpus": 1, "sbatch": {}, **table}
    settings["name"] = name or settings["name"]
    settings["jobs"] = jobs if jobs is not None else settings["jobs"]
    if settings["name"] not in NAMES:
        raise DiffkitError(f"unknown executor {settings['name']!r}; choose {', '.join(NAMES)}")
    for key, low in (("jobs", 1), ("cpus", 1), ("gpus", 0), ("train_gpus", 1), ("time", 1)):
        if key in settings and not low <= settings[key] <= 100_000:
            raise DiffkitError(f"[executor] {key} / --{key} must be an integer from {low}, got {settings[key]}")
    if settings["name"] in EXTRAS:
        try:
            __import__(EXTRAS[settings["name"]])
        except ImportError:
            raise DiffkitError(f"the {settings['name']} executor needs {EXTRAS[settings['name']]}: "
                               f"pip install 'diffkit[{settings['name']}]'") from None
    if settings["name"] == "ray" and settings["train_gpus"] > 1:
        raise DiffkitError("the ray executor trains a model on one GPU (train_gpus = 1); for several GPUs per "
                           "training use the slurm executor, or torchrun on one machine")
    if (settings["name"] != "local" or settings["jobs"] > 1) and distributed.active():
        raise DiffkitError("under torchrun, compare runs its cells one at a time in every process: leave out "
                           "--jobs and --executor")
    return settings


class Finished:
    """The handle of a cell run in this process: done when submitted."""

    def __init__(self, record):
        self.record = record

    def done(self):
        return True

    def result(self):
        return self.record


class Inline:
    """One cell at a time in this process (and, under torchrun, in every process): training shows its progress."""

    live = False
    stagewise = False

    def __init__(self, console):
        self.console = console

    def submit(self, tasks):
        return [Finished(execute(task, self.console)) for task in tasks]

    def stop(self, signum):
        pass

    def close(self):
        pass


class LocalPool:
    """K cells at once in worker processes on this machine, the cores split between them (two CPU jobs that
    share threads slow each other 5-8x); each cell's output goes to cells/<id>.log."""

    live = True
    stagewise = False

    def __init__(self, jobs, threads):
        self.jobs, self.threads = jobs, threads
        self._start()

    def _start(self):
        saved = os.environ.get("OMP_NUM_THREADS")
        os.environ["OMP_NUM_THREADS"] = str(self.threads)  # read by the workers' OpenMP when they start
        self.pool = ProcessPoolExecutor(self.jobs, mp_context=get_context("spawn"), initializer=stop_with_parent,
                                        initargs=(os.getpid(),))  # each Task sets torch's threads
        for _ in self.pool.map(int, range(self.jobs)):  # start the workers now, while the variable is set
            pass
        os.environ.pop("OMP_NUM_THREADS") if saved is None else os.environ.update(OMP_NUM_THREADS=saved)

    def submit(self, tasks):
        try:
            return [self.pool.submit(run_in_worker, task) for task in tasks]
        except BrokenProcessPool:  # a worker was killed (out of memory, say): its cell failed, the rest go on
            self.pool.shutdown(wait=False, cancel_futures=True)
            self._start()
            return [self.pool.submit(run_in_worker, task) for task in tasks]

    def stop(self, signum):
        for process in list(self.pool._processes.values()):  # noqa: SLF001 - the pool exposes no other way
            if process.is_alive():
                os.kill(process.pid, signum)  # each saves its checkpoint and records itself as interrupted

    def close(self):
        self.pool.shutdown(wait=True, cancel_futures=True)


_busy = threading.Event()  # set while a local worker runs a cell


def run_in_worker(task):
    """One cell in a local worker, marked busy while it runs (see stop_with_parent)."""
    _busy.set()
    try:
        return execute(task)
    finally:
        _busy.clear()


def stop_with_parent(parent, grace=60):
    """In a local worker: once the compare that started it is gone (killed with SIGKILL, which cannot be
    forwarded), stop. A cell still running gets SIGTERM first, so a training saves its checkpoint and records
    itself interrupted; the worker exits when the cell has, or `grace` seconds later."""
    def watch():
        while os.getppid() == parent:
            time.sleep(1)
        if _busy.is_set():
            os.kill(os.getpid(), signal.SIGTERM)
            deadline = time.monotonic() + grace
            while _busy.is_set() and time.monotonic() < deadline:
                time.sleep(0.2)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


class Slurm:
    """Job arrays through submitit, one per stage; a training cell on several GPUs is one job of that many
    tasks, each exporting the torch.distributed variables that diffkit's torchrun path reads. Cells are
    checkpointable: a preempted or timed-out training cell is requeued and resumes from its checkpoint."""

    live = True
    stagewise = True

    def __init__(self, settings, out_dir):
        import submitit

        class CellJob(submitit.helpers.Checkpointable):
            def __call__(self, task):
                return execute(task)

        self.job = CellJob
        self.settings = settings
        self.executor = submitit.AutoExecutor(folder=Path(out_dir) / "cells" / "submitit",
                                              cluster=settings.get("cluster"))

    def submit(self, tasks):
        s, train = self.settings, tasks[0].cell.startswith("train-")
        tasks_per_job = s["train_gpus"] if train else 1
        self.executor.update_parameters(
            name="diffkit", timeout_min=s.get("time", 240), cpus_per_task=s["cpus"], tasks_per_node=tasks_per_job,
            gpus_per_node=s["train_gpus"] if train and s["gpus"] else s["gpus"],
            slurm_partition=s.get("partition"), slurm_additional_parameters=s["sbatch"] or None)
        for task in tasks:
            task.distributed_env = tasks_per_job > 1
        with self.executor.batch():
            jobs = [self.executor.submit(self.job(), task) for task in tasks]
        return [SlurmHandle(job) for job in jobs]

    def stop(self, signum):
        pass  # the jobs run on; `diffkit compare --status` follows them, the same command picks them up

    def close(self):
        pass


class SlurmHandle:
    def __init__(self, job):
        self.job = job

    def done(self):
        return self.job.done()

    def result(self):
        return self.job.results()[0]  # task 0 of a multi-task training job records the cell


class Ray:
    """One Ray task per cell, with the CPUs and GPUs of [executor]; ray.init(address=...) joins a running
    cluster, or starts a one-node cluster on this machine when no address is given."""

    live = True
    stagewise = False

    def __init__(self, settings):
        import ray

        self.ray = ray
        if not ray.is_initialized():
            ray.init(address=settings.get("address"), include_dashboard=False, log_to_driver=False)
        self.remote = ray.remote(execute).options(num_cpus=settings["cpus"], num_gpus=settings["gpus"])

    def submit(self, tasks):
        return [RayHandle(self.ray, self.remote.remote(task)) for task in tasks]

    def stop(self, signum):
        pass

    def close(self):
        pass


class RayHandle:
    def __init__(self, ray, ref):
        self.ray, self.ref = ray, ref

    def done(self):
        return bool(self.ray.wait([self.ref], timeout=0)[0])

    def result(self):
        return self.ray.get(self.ref)


def executor_for(settings, out_dir, console, cells_to_run):
    """The executor of `settings`; a local pool starts no more workers than there are cells to run."""
    if settings["name"] == "slurm":
        return Slurm(settings, out_dir)
    if settings["name"] == "ray":
        return Ray(settings)
    jobs = min(settings["jobs"], max(1, cells_to_run))
    return LocalPool(jobs, threads_per_cell(settings)) if jobs > 1 else Inline(console)


def threads_per_cell(settings):
    """torch's CPU threads in one cell: the cores split between local jobs, a cell's `cpus` on a cluster."""
    if settings["name"] != "local":
        return settings["cpus"]
    return max(1, (os.cpu_count() or 1) // settings["jobs"]) if settings["jobs"] > 1 else None


def run_sweep(cells, task_of, executor, out_dir, console):
    """Run every cell not done yet, each once its needs are done; returns {cell id: record} of this command's
    cells (failed ones, and those not run because a cell they need failed, included)."""
    records = {c.id: {"state": "done", "earlier": True} for c in cells if is_done(out_dir, c)}
    pending, running = [c for c in cells if c.id not in records], {}
    if records:
        console.print(f"[dim]reusing {len(records)} finished cell(s) of {len(cells)} (records in "
                      f"{escape(str(Path(out_dir) / 'cells'))}); {len(pending)} to run")
    signals = []
    handlers = {s: signal.signal(s, lambda signum, frame: signals.append(signum))
                for s in (signal.SIGINT, signal.SIGTERM)} if executor.live else {}
    live = Live(status_table(cells, out_dir, "diffkit compare", records), console=console, refresh_per_second=2,
                transient=False) if executor.live else None
    try:
        if live:
            live.start()
        while pending or running:
            if signals:
                executor.stop(signals[0])
                break
            _skip_dependants(pending, records)
            ready = [c for c in pending if all(records.get(n, {}).get("state") == "done" for n in c.needs)]
            if executor.stagewise and ready:
                if running:
                    ready = []
                else:
                    first = min(STAGES.index(c.kind) for c in ready)
                    ready = [c for c in ready if STAGES.index(c.kind) == first]
            if ready:
                for cell in ready:
                    pending.remove(cell)
                    records[cell.id] = {"state": "running", "started": time.time()}
                for cell, handle in zip(ready, executor.submit([task_of(c) for c in ready])):
                    running[cell.id] = handle
            for cell_id, handle in list(running.items()):
                if handle.done():
                    del running[cell_id]
                    records[cell_id] = _result(handle)
            if live:
                live.update(status_table(cells, out_dir, "diffkit compare", records))
            if running and not any(h.done() for h in running.values()):
                time.sleep(0.5)
            elif not ready and not running and pending:
                _skip_dependants(pending, records)
        if signals:
            for cell_id, handle in running.items():
                while not handle.done():
                    time.sleep(0.2)
                records[cell_id] = _result(handle)
            raise Interrupted(0, signals[0], message="interrupted; finished cells are kept, and a stopped training "
                                                     "saved its checkpoint")
    finally:
        if live:
            live.update(status_table(cells, out_dir, "diffkit compare", records))
            live.stop()
            console.print()
        for s, handler in handlers.items():
            signal.signal(s, handler)
        executor.close()
    return records


def _skip_dependants(pending, records):
    """Mark the pending cells that need a failed cell as failed themselves (not run), until none is left."""
    changed = True
    while changed:
        changed = False
        for cell in list(pending):
            failed = next((n for n in cell.needs if records.get(n, {}).get("state") == "failed"), None)
            if failed:
                records[cell.id] = {"state": "failed", "error": f"not run: it needs {failed}, which failed"}
                pending.remove(cell)
                changed = True


def _result(handle):
    """A finished cell's record; a worker that died or was interrupted is a failed cell."""
    try:
        return handle.result()
    except Interrupted:
        return {"state": "failed", "error": "interrupted"}
    except Exception as exc:  # noqa: BLE001 - a lost worker (killed, out of memory) fails its cell alone
        first = (str(exc).strip().splitlines() or [""])[0]
        return {"state": "failed", "error": f"{type(exc).__name__}: {first}"[:300]}


def make_tasks(config, out_dir, data_root, device, settings, executor):
    """The Task of a cell, as `executor` runs it: in this process with its console and threads, or elsewhere
    with the cell's threads and its output in cells/<id>.log."""
    threads, quiet = (None, False) if isinstance(executor, Inline) else (threads_per_cell(settings), True)

    def task_of(cell):
        return Task(str(Path(config).resolve()), str(Path(out_dir).resolve()), cell.id,
                    None if data_root is None else str(Path(data_root).resolve()), device, threads, quiet)
    return task_of

