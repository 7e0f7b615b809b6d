"""Several processes under torchrun: two gloo processes on the CPU do what one process does."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from diffkit.checkpoint import read_state
import torch
from safetensors.torch import load_file

from conftest import TINY

TRAIN = ["train", "-d", "gaussian", "--network", "cnn", *TINY, "--batch-size", "9", "--checkpoint-every", "10",
         "--device", "cpu"]


def diffkit(*args, ranks=1):
    """Run the diffkit CLI in `ranks` processes (torchrun --standalone for more than one)."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(ranks)] \
        if ranks > 1 else [sys.executable]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([*launcher, "-m", "diffkit", *map(str, args)], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def weights(run_dir):
    folder = run_dir / "checkpoints"
    return load_file(folder / (folder / "latest").read_text().strip() / "weights.safetensors")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same 20-step run in one process and in two (global batch 9: split 4 + 5)."""
    root = tmp_path_factory.mktemp("ddp")
    diffkit(*TRAIN, "--steps", 20, "--out", root / "one")
    diffkit(*TRAIN, "--steps", 20, "--out", root / "two", ranks=2)
    return root


def test_two_processes_reach_the_weights_of_one(runs):
    one, two = weights(runs / "one"), weights(runs / "two")
    assert one.keys() == two.keys()
    for key in one:
        assert torch.allclose(one[key], two[key], rtol=1e-4, atol=1e-5), key
    state = read_state(runs / "two")
    assert (state["world_size"], state["step"], state["images_seen"]) == (2, 20, 180)
    logs = [json.loads(line) for line in (runs / "two" / "log.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in logs] == [20]  # rank 0 alone writes the log
    assert logs[0]["loss"] == pytest.approx(json.loads((runs / "one" / "log.jsonl").read_text())["loss"], rel=1e-4)


def test_a_two_process_checkpoint_resumes_in_one_process(runs, tmp_path):
    diffkit(*TRAIN, "--steps", 10, "--out", tmp_path / "part", ranks=2)
    diffkit("train", "--resume", "--steps", 20, "--out", tmp_path / "part", "--device", "cpu")
    resumed, one = weights(tmp_path / "part"), weights(runs / "one")
    for key in one:
        assert torch.allclose(resumed[key], one[key], rtol=1e-4, atol=1e-5), key


def test_two_ranks_write_the_samples_of_one(runs, tmp_path):
    common = ["sample", runs / "one", "-n", 50, "--batch-size", 16, "--steps", 4, "--seed", 5, "--device", "cpu"]
    diffkit(*common, "--out", tmp_path / "one.npz")
    diffkit(*common, "--out", tmp_path / "two.npz", "--grid", tmp_path / "two.png", ranks=2)
    a, b = np.load(tmp_path / "one.npz"), np.load(tmp_path / "two.npz")
    assert a["images"].shape == (50, 28, 28)
    assert a["images"].tobytes() == b["images"].tobytes()
    meta = json.loads(str(b["meta"]))
    assert (meta["world_size"], meta["n"], meta["seed"]) == (2, 50, 5)
    assert (tmp_path / "two.png").exists()


def test_compare_trains_and_samples_on_two_ranks_and_rank_0_reports(tmp_path):
    config = tmp_path / "tiny.toml"
    config.write_text('[compare]\nsamples = 40\ndevice = "cpu"\n\n[[models]]\nname = "tiny"\nnetwork = "cnn"\n'
                      'steps = 4\nbatch_size = 8\ndegradation_options = { T = 20 }\n'
                      'network_options = { hidden = [4, 8], time_features = 8 }\nsamplers = [{ name = "ddim", steps = 3 }]\n')
    diffkit("compare", config, "--out", tmp_path / "report", ranks=2)
    rows = json.loads((tmp_path / "report" / "metrics.json").read_text())["rows"]
    assert [(r["model"], r["steps"], r["n"]) for r in rows if not r["reference_row"]] == [("tiny", 3, 40)]
    samples = tmp_path / "report" / "samples" / "tiny__ddim-3.npz"
    assert json.loads(str(np.load(samples)["meta"]))["world_size"] == 2
    diffkit("sample", tmp_path / "report" / "runs" / "tiny", "-n", 40, "--steps", 3, "--device", "cpu",
            "--out", tmp_path / "one.npz")
    assert np.load(samples)["images"].tobytes() == np.load(tmp_path / "one.npz")["images"].tobytes()


def test_a_killed_rank_leaves_one_line_on_the_other_naming_the_checkpoint(tmp_path):
    """kill -9 of rank 1 mid-training: rank 0 says in one line what happened and which checkpoint --resume uses
    (torchrun then prints its own report), and that checkpoint resumes."""
    import signal
    import time
    from pathlib import Path

    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    job = subprocess.Popen([*launcher, "-m", "diffkit", *map(str, [*TRAIN, "--steps", 10**6, "--out", run])],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.time() + 120
        while not (run / "checkpoints" / "latest").exists() and time.time() < deadline:
            time.sleep(0.2)
        workers = Path(f"/proc/{job.pid}/task/{job.pid}/children").read_text().split()
        rank_1 = next(pid for pid in workers if b"RANK=1" in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"))
        os.kill(int(rank_1), signal.SIGKILL)
        _, err = job.communicate(timeout=120)
    finally:
        job.kill()
    lines = [line for line in err.splitlines() if line.startswith("Error: ")]
    assert len(lines) == 1, err[-3000:]
    assert "rank 0: another process of this torchrun job stopped" in lines[0]
    step = int(lines[0].split("the newest checkpoint is step ")[1].split(":")[0])
    assert read_state(run)["step"] == step > 0
    diffkit("train", "--resume", "--steps", step + 2, "--device", "cpu", "--out", run)
    assert read_state(run)["step"] == step + 2
