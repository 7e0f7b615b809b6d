import json
import re
import subprocess
import sys

import numpy as np
import pytest

from diffkit.checkpoint import read_state
from safetensors.torch import load_file

from conftest import TINY, invoke

TRAIN = ["train", "-d", "gaussian", "--network", "cnn", *TINY, "--checkpoint-every", "3"]


def weights(run_dir):
    folder = run_dir / "checkpoints"
    return load_file(folder / (folder / "latest").read_text().strip() / "weights.safetensors")


def test_train_then_sample_round_trip(runner, tmp_path):
    run = tmp_path / "run"
    result = invoke(runner, *TRAIN, "--steps", 4, "--seed", 3, "--out", run)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (run / "checkpoints").glob("step-*")) == ["step-00000003", "step-00000004"]
    state = json.loads((run / "checkpoints" / "step-00000004" / "state.json").read_text())
    assert state["step"] == 4 and state["seed"] == 3
    options = state["config"]["degradation_options"]
    assert options["T"] == 20 and options["schedule"] == "linear"  # typed, with every default recorded
    assert state["config"]["network_options"]["hidden"] == [4, 8]
    assert re.fullmatch(r"diffkit 0\.1\.0 source [0-9a-f]{12}", state["versions"]["degradation:gaussian"])
    assert [json.loads(l)["step"] for l in (run / "log.jsonl").read_text().splitlines()] == [4]

    result = invoke(runner, "sample", run, "-n", 5, "--steps", 4, "--out", tmp_path / "s.npz",
                    "--grid", tmp_path / "s.png", "--trajectory", tmp_path / "t.png")
    assert result.exit_code == 0, result.output
    data = np.load(tmp_path / "s.npz")
    assert data["images"].shape == (5, 28, 28) and data["images"].dtype == np.uint8
    meta = json.loads(str(data["meta"]))
    assert (meta["sampler"], meta["steps"], meta["nfe"], meta["seed"], meta["training_step"]) == ("ddim", 4, 4, 0, 4)
    assert meta["config"]["network"] == "cnn" and "sampler:ddim" in meta["versions"]
    assert (tmp_path / "s.png").stat().st_size > 0 and (tmp_path / "t.png").stat().st_size > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "s.npz", "s.png", "t.png"]  # its batches folder is gone

    again = invoke(runner, "sample", run, "-n", 5, "--steps", 4, "--out", tmp_path / "s2.npz")
    assert again.exit_code == 0, again.output
    assert np.array_equal(np.load(tmp_path / "s2.npz")["images"], data["images"])  # same seed, same images


def test_resume_reaches_the_weights_of_an_uninterrupted_run(runner, tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    assert invoke(runner, *TRAIN, "--steps", 6, "--out", full).exit_code == 0
    assert invoke(runner, *TRAIN, "--steps", 3, "--out", part).exit_code == 0
    result = invoke(runner, "train", "--resume", "--steps", 6, "--out", part)
    assert result.exit_code == 0, result.output
    a, b = weights(full), weights(part)
    assert a.keys() == b.keys() and any(k.startswith("optimizer.") for k in a)
    assert all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)
    assert [json.loads(l)["step"] for l in (part / "log.jsonl").read_text().splitlines()] == [3, 6]


def test_command_line_values_override_the_preset(runner, tmp_path):
    result = invoke(runner, "train", "--preset", "coursework", *TINY, "--steps", 2, "--lr", 0.01, "--out", tmp_path / "r")
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert (config["network"], config["lr"], config["steps"], config["batch_size"]) == ("cnn", 0.01, 2, 8)
    assert config["degradation_options"]["schedule"] == "linear" and config["sampler"] == "ddpm"


@pytest.mark.parametrize("args,message", [
    (["train", "-d", "nope", "--out", "{tmp}/r"], "unknown degradation 'nope'; known degradations: blur, fade, flow, gaussian, heat, mask, pixelate"),
    (["train", "--network", "resnet", "--out", "{tmp}/r"], "unknown network 'resnet'; known networks: cnn, unet"),
    (["train", "-o", "colour=red", "--out", "{tmp}/r"], "unknown option 'colour'"),
    (["train", "-o", "T=many", "--out", "{tmp}/r"], "option T='many': expected int"),
    (["train", "-o", "schedule=square", "--out", "{tmp}/r"], "option schedule='square': choose one of linear, cosine"),
    (["train", "-o", "T", "--out", "{tmp}/r"], "option 'T' must look like KEY=VALUE"),
    (["train", "--steps", "0", "--out", "{tmp}/r"], "steps must be a positive integer, got 0"),
    (["train", "--batch-size", "-2", "--out", "{tmp}/r"], "batch-size must be a positive integer, got -2"),
    (["train", "--preset", "huge", "--out", "{tmp}/r"], "unknown preset 'huge'"),
    (["train", "--network", "cnn", *TINY, "--data-root", "{tmp}/nowhere", "--out", "{tmp}/r"], "set DIFFKIT_DATA"),
    (["sample", "{tmp}", "--out", "{tmp}/s.npz"], "no checkpoint in"),
    (["sample", "{tmp}/missing", "--out", "{tmp}/s.npz"], "is not a run directory"),
])
def test_bad_input_gives_one_line_and_a_non_zero_exit(runner, tmp_path, args, message):
    result = invoke(runner, *[a.format(tmp=tmp_path) for a in args])
    assert result.exit_code != 0
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert "Traceback" not in result.output


def test_sample_errors(runner, tmp_path):
    run = tmp_path / "run"
    assert invoke(runner, *TRAIN, "--steps", 1, "--out", run).exit_code == 0
    cases = [
        (["-n", "0", "--out", tmp_path / "s.npz"], "-n must be a positive integer"),
        (["--steps", "21", "--out", tmp_path / "s.npz"], "--steps must be between 1 and T=20"),
        (["--sampler", "nope", "--out", tmp_path / "s.npz"], "unknown sampler 'nope'"),
        (["-o", "eta=-1", "--out", tmp_path / "s.npz"], "eta must be >= 0"),
        (["--out", tmp_path / "s.png"], "--out must be a .npz file"),
    ]
    for args, message in cases:
        result = invoke(runner, "sample", run, *args)
        assert result.exit_code == 1 and message in result.output, (args, result.output)
    again = invoke(runner, *TRAIN, "--steps", 1, "--out", run)
    assert again.exit_code == 1 and "already holds a run" in again.output


def test_unreadable_checkpoint(runner, tmp_path):
    run = tmp_path / "run"
    assert invoke(runner, *TRAIN, "--steps", 1, "--out", run).exit_code == 0
    next((run / "checkpoints").glob("step-*/weights.safetensors")).write_bytes(b"not a safetensors file")
    result = invoke(runner, "sample", run, "--out", tmp_path / "s.npz")
    assert result.exit_code == 1 and "unreadable checkpoint" in result.output
    assert not (tmp_path / "s.npz").exists()


def test_the_installed_command_prints_one_line_without_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "diffkit", "train", "-d", "nope", "--out", str(tmp_path / "r")],
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.strip() == "Error: unknown degradation 'nope'; known degradations: blur, fade, flow, gaussian, heat, mask, pixelate"


def test_degrade_draws_the_forward_path(runner, tmp_path):
    from PIL import Image

    result = invoke(runner, "degrade", "-d", "blur", "-n", 3, "--frames", 5, "--grid", tmp_path / "g.png")
    assert result.exit_code == 0, result.output
    assert "t = 0, 5, 10, 15, 20" in result.output
    assert Image.open(tmp_path / "g.png").size == (5 * 30 + 2, 3 * 30 + 2)
    bad = invoke(runner, "degrade", "-d", "blur", "-o", "sigma=-1", "--grid", tmp_path / "g.png")
    assert bad.exit_code == 1 and "sigma positive" in bad.output


def test_cold_run_restores_real_images_in_a_separate_table(runner, tmp_path):
    run = tmp_path / "run"
    result = invoke(runner, "train", "-d", "blur", "--network", "cnn", "-o", "T=3", "-o", "hidden=4,4",
                    "-o", "time_features=8", "--steps", 2, "--batch-size", 8, "--out", run)
    assert result.exit_code == 0, result.output
    result = invoke(runner, "restore", run, "-n", 20, "--json", tmp_path / "r.json", "--grid", tmp_path / "r.png")
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "r.json").read_text())
    assert set(record) == {"info", "degraded", "direct", "sampled"}
    assert record["info"] == {"sampler": "cold-naive", "steps": 3, "n": 20, "split": "test"}
    assert 0 < record["degraded"]["rmse"]["value"] < 1 and record["sampled"]["fid"]["n"] == 20
    assert (tmp_path / "r.png").exists()


def test_ctrl_c_saves_a_checkpoint_and_resume_continues(tmp_path):
    import os
    import signal
    import time

    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "diffkit", "train", "-d", "gaussian", "--network", "cnn", *TINY,
           "--steps", "100000", "--checkpoint-every", "100000", "--out", str(run)]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env={**os.environ, "COLUMNS": "200"})
    deadline = time.time() + 120
    while not (run / "log.jsonl").exists() and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "checkpoint saved, continue with --resume" in err and "Traceback" not in err
    state = read_state(run)
    assert state["step"] >= 50  # log_every: the log appears after 50 steps
    resumed = subprocess.run([sys.executable, "-m", "diffkit", "train", "--resume", "--steps", str(state["step"] + 2),
                              "--out", str(run)], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert read_state(run)["step"] == state["step"] + 2


def test_version_and_help_answer_without_importing_torch():
    """Every plugin module loads for --help; the built-ins import torch only inside their hooks."""
    code = ("import sys\nfrom diffkit.cli import cli\nfor args in (['--help'], ['train', '--help']):\n"
            "    try: cli(args)\n    except SystemExit: pass\nprint('torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.stdout.strip().splitlines()[-1] == "False", proc.stderr
    text = " ".join(proc.stdout.split())  # --help wraps lines
    assert "compare" in text and "Optimizer steps in total. [default: 10000, unless --preset/--config sets it]" in text
    version = subprocess.run([sys.executable, "-m", "diffkit", "--version"], capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.strip() == "diffkit, version 0.1.0"


def test_a_spacing_that_merges_timesteps_says_how_many_jumps_run(runner, tmp_path):
    """Log-SNR spacing on flow matching clamps λ at the pure-noise end, so 10 requested steps make fewer distinct
    integer jumps: `sample` says so in its one line, and the samples' meta records the jumps."""
    run = tmp_path / "flow"
    trained = invoke(runner, "train", "-d", "flow", "--network", "cnn", "-o", "hidden=4,8", "-o", "time_features=8",
                     "--batch-size", 8, "--steps", 1, "--out", run)
    assert trained.exit_code == 0, trained.output
    result = invoke(runner, "sample", run, "-n", 4, "--sampler", "heun", "-o", "spacing=logsnr", "--steps", 10,
                    "--out", tmp_path / "s.npz")
    assert result.exit_code == 0, result.output
    meta = json.loads(str(np.load(tmp_path / "s.npz")["meta"]))
    assert meta["steps"] == 10 and meta["jumps"] < 10
    assert f"10 steps run as {meta['jumps']} distinct jumps" in " ".join(result.output.split())
