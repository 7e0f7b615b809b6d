"""The compare plan as cells: the same metrics.json from every executor, resumption after a kill, a failed
cell that leaves the rest, --plan and --status, and budget curves from one training."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from diffkit import hookimpl
from diffkit_gaussian.diffusion import GaussianDiffusion

from conftest import ROOT, invoke

MODELS = """
[compare]
samples = 40
budgets = [2, 4]
features = ["classifier"]

[[models]]
name = "a"
network = "cnn"
batch_size = 8
degradation_options = {{ T = 10 }}
network_options = {{ hidden = [4, 4], time_features = 8 }}
samplers = [{{ name = "ddim", steps = 2 }}]

[[models]]
name = "b"
degradation = "{second}"
network = "cnn"
batch_size = 8
degradation_options = {{ T = 5 }}
network_options = {{ hidden = [4, 4], time_features = 8 }}
"""
TIMINGS = {"training_seconds", "sampling_seconds", "seconds_per_1000"}
# The executor tables of README's "Run it on a cluster", as the tests run them (submitit's local cluster, a
# one-node Ray cluster started by the test).
SLURM = '\n[executor]\nname = "slurm"\ncluster = "local"\ntime = 10\n'
RAY = '\n[executor]\nname = "ray"\ncpus = 1\n'


def without_timings(value):
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items() if k not in TIMINGS}
    if isinstance(value, list):
        return [without_timings(v) for v in value]
    return value


def metrics(report):
    return without_timings(json.loads((report / "metrics.json").read_text()))


def run_compare(config, out, *args, timeout=600):
    """`diffkit compare` in its own process (as a user runs it: executors spawn workers, signals reach it)."""
    return subprocess.run([sys.executable, "-m", "diffkit", "compare", str(config), "--out", str(out), *args],
                          capture_output=True, text=True, timeout=timeout, env={**os.environ, "OMP_NUM_THREADS": "1"})


@pytest.fixture(scope="module")
def local_report(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cells")
    config = folder / "tiny.toml"
    config.write_text(MODELS.format(second="blur"))
    done = run_compare(config, folder / "local")
    assert done.returncode == 0, done.stderr
    return config, folder / "local"


def test_budgets_score_each_model_at_checkpoints_of_one_training(local_report):
    config, report = local_report
    assert sorted(p.name for p in (report / "runs" / "a" / "checkpoints").glob("step-*")) == \
        ["step-00000002", "step-00000004"]
    record = json.loads((report / "metrics.json").read_text())
    rows = [r for r in record["rows"] if not r["reference_row"]]
    assert [(r["model"], r["budget"], r["training_images"]) for r in rows] == \
        [("a", 2, 16), ("a", 4, 32), ("b", 2, 16), ("b", 4, 32)]
    assert [b["budget"] for b in record["budgets"]] == [2, 4]
    for budget in record["budgets"]:  # best first, each model once
        fids = [entry["fid"] for entry in budget["ranking"]]
        assert fids == sorted(fids) and {e["model"] for e in budget["ranking"]} == {"a", "b"}
    text = (report / "report.md").read_text()
    assert "## Training budgets" in text and "(figures/budgets.png)" in text
    first, last = ([e["model"] for e in b["ranking"]] for b in record["budgets"])
    assert f"{'is the same as' if first == last else 'differs from'} the ranking at 2 steps" in text
    assert (report / "figures" / "budgets.png").stat().st_size > 0


@pytest.mark.parametrize("how", ["jobs-2", "slurm-local", "ray-local"])
def test_every_executor_writes_the_same_metrics(local_report, tmp_path, how):
    config, local = local_report
    if how == "jobs-2":
        done = run_compare(config, tmp_path / "out", "--jobs", "2")
    else:
        pytest.importorskip("submitit" if how == "slurm-local" else "ray")
        other = tmp_path / "c.toml"
        other.write_text(config.read_text() + (SLURM if how == "slurm-local" else RAY))
        done = run_compare(other, tmp_path / "out")
    assert done.returncode == 0, done.stderr
    assert metrics(tmp_path / "out") == metrics(local)
    states = [json.loads(p.read_text())["state"] for p in (tmp_path / "out" / "cells").glob("*.json")]
    assert states == ["done"] * 12


def test_plan_and_status_list_every_cell(local_report, tmp_path):
    config, report = local_report
    plan = run_compare(config, tmp_path / "fresh", "--plan")
    assert plan.returncode == 0 and "12 cells, 12 to run" in " ".join(plan.stdout.split())
    assert "train-a-" in plan.stdout and "sample-a@2__ddim-2-" in plan.stdout and not (tmp_path / "fresh").exists()
    status = run_compare(config, report, "--status")
    assert status.returncode == 0 and "12 done" in status.stdout
    planned = run_compare(config, report, "--plan")
    assert "12 cells, 0 to run" in " ".join(planned.stdout.split())


def test_a_killed_sweep_finishes_without_recomputing_finished_cells(local_report, tmp_path):
    config, local = local_report
    slow = tmp_path / "slow.toml"  # model b trains 1,500 steps: long enough to be stopped in the middle
    slow.write_text(config.read_text() + "budgets = [2, 1500]\ncheckpoint_every = 100\n")
    out = tmp_path / "out"
    process = subprocess.Popen([sys.executable, "-m", "diffkit", "compare", str(slow), "--out", str(out), "--jobs", "2"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 300
    while not list((out / "runs" / "b" / "checkpoints").glob("step-00000100")) and time.time() < deadline:
        time.sleep(0.2)
    finished = {p.name: p.read_text() for p in (out / "cells").glob("*.json") if '"done"' in p.read_text()}
    assert finished, "no cell finished before the kill"
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=300)
    assert process.returncode == 130 and "run the same diffkit compare command again" in " ".join(err.split())
    again = run_compare(slow, out, "--jobs", "2")
    assert again.returncode == 0, again.stderr
    assert "resuming b from step" in (out / "cells" / next(p.name for p in (out / "cells").glob("train-b-*.log"))) \
        .read_text()
    for name, text in finished.items():  # finished cells were not run again
        assert (out / "cells" / name).read_text() == text
    uninterrupted = tmp_path / "whole"
    assert run_compare(slow, uninterrupted, "--jobs", "2").returncode == 0
    assert metrics(out) == metrics(uninterrupted)


def gone(pid):
    """Whether process `pid` has exited (a zombie that nobody reaps has exited too)."""
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split()[0] == "Z"
    except (FileNotFoundError, IndexError):
        return True


def test_a_sweep_killed_outright_stops_its_workers_and_keeps_their_checkpoints(local_report, tmp_path):
    """SIGKILL cannot be forwarded: the workers see their parent gone, and a training saves and stops."""
    config, _ = local_report
    slow = tmp_path / "slow.toml"
    slow.write_text(config.read_text() + "budgets = [2, 5000]\ncheckpoint_every = 100\n")
    out = tmp_path / "out"
    process = subprocess.Popen([sys.executable, "-m", "diffkit", "compare", str(slow), "--out", str(out), "--jobs", "2"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 300
    while not list((out / "runs" / "b" / "checkpoints").glob("step-00000100")) and time.time() < deadline:
        time.sleep(0.2)
    record = next((out / "cells").glob("train-b-*.json"))
    worker = json.loads(record.read_text())["pid"]
    process.kill()
    process.wait(timeout=30)
    deadline = time.time() + 30
    while not gone(worker) and time.time() < deadline:
        time.sleep(0.2)
    assert gone(worker), "the training worker outlived its compare by 30 s"
    assert json.loads(record.read_text())["error"] == "interrupted"
    saved = int((out / "runs" / "b" / "checkpoints" / "latest").read_text().split("-")[1])
    assert 100 <= saved < 5000  # the step it had reached, saved on the way out


class Raises(GaussianDiffusion):
    """A degradation whose training raises, as a plugin's bug would."""

    def training_losses(self, *args, **kwargs):
        raise ValueError("this plugin cannot train")


class RaisingPlugin:
    @staticmethod
    @hookimpl
    def register_degradations(register):
        register(Raises, name="raises")


def test_a_failed_cell_leaves_the_others_and_the_report_lists_it(register_plugin, runner, tmp_path):
    register_plugin(RaisingPlugin, "raising")
    config = tmp_path / "c.toml"
    config.write_text(MODELS.format(second="raises").replace("degradation_options = { T = 5 }", ""))
    result = invoke(runner, "compare", config, "--out", tmp_path / "out")
    assert result.exit_code == 1
    message = " ".join(result.output.split())
    assert "5 of 12 cells failed" in message and "train-b-" in message and "ValueError: this plugin cannot train" in message
    record = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert [r["model"] for r in record["rows"] if not r["reference_row"]] == ["a", "a"]
    kinds = sorted(f["kind"] for f in record["failures"])
    assert kinds == ["sample", "sample", "score", "score", "train"]
    text = (tmp_path / "out" / "report.md").read_text()
    assert "## Failed cells" in text and "ValueError: this plugin cannot train" in text
    assert "not run: it needs train-b-" in text
    again = invoke(runner, "compare", config, "--out", tmp_path / "out")  # only the failed cells run again
    assert again.exit_code == 1 and "reusing 7 finished cell(s) of 12" in " ".join(again.output.split())


def test_an_executor_without_its_extra_is_one_line(tmp_path, monkeypatch, runner):
    import builtins

    config = tmp_path / "c.toml"
    config.write_text(MODELS.format(second="blur") + '\n[executor]\nname = "ray"\n')
    real = builtins.__import__
    monkeypatch.setattr(builtins, "__import__", lambda name, *a, **k: (_ for _ in ()).throw(ImportError(name))
                        if name == "ray" else real(name, *a, **k))
    result = invoke(runner, "compare", config, "--out", tmp_path / "out")
    assert result.exit_code == 1 and "the ray executor needs ray: pip install 'diffkit[ray]'" in result.output
    assert not (tmp_path / "out").exists()


def test_the_readme_shows_the_executor_tables_the_tests_run():
    readme = (ROOT / "README.md").read_text()
    for table in (SLURM, RAY):
        assert table.strip() in readme
