"""Nothing lost, nothing cryptic: crashes at every point of a checkpoint save, kill -9, divergence,
concurrent runs, SIGTERM."""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

import diffkit.checkpoint as checkpoint
from diffkit import hookimpl
from diffkit.checkpoint import load_checkpoint, save_checkpoint
from diffkit.run import Run, make_config
from diffkit.trainer import train
from diffkit_gaussian.diffusion import GaussianDiffusion

from conftest import TINY

TINY_OPTIONS = {"T": 20, "hidden": "4,8", "time_features": 8}


class Crash(BaseException):
    """Stands for the process dying: nothing after it runs, except `finally` blocks."""


def tiny(steps, checkpoint_every=2):
    return make_config(network="cnn", options=TINY_OPTIONS, steps=steps, batch_size=8,
                       checkpoint_every=checkpoint_every)


def weights(run_dir):
    tensors, state = load_checkpoint(run_dir)
    return tensors, state["step"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted 4-step run."""
    run = tmp_path_factory.mktemp("ref") / "run"
    train(tiny(4), run, device="cpu")
    return weights(run)[0]


SAVE_STEPS = ["os.replace", "shutil.rmtree", "fsync_path", "save_file", "write_text"]


def crash_at(monkeypatch, k):
    """Make the k-th call of any filesystem step of a checkpoint save raise Crash; returns the call log."""
    calls = []
    for name in SAVE_STEPS:
        owner = checkpoint.os if name == "os.replace" else checkpoint.shutil if name == "shutil.rmtree" else checkpoint
        attr = name.split(".")[-1]
        real = getattr(owner, attr)

        def fake(*args, _real=real, _name=name, **kwargs):
            calls.append(_name)
            if len(calls) == k:
                raise Crash(_name)
            return _real(*args, **kwargs)

        monkeypatch.setattr(owner, attr, fake)
    return calls


def test_a_crash_at_any_point_of_a_save_loses_nothing_and_resumes_exactly(tmp_path, monkeypatch, reference):
    with monkeypatch.context() as m:
        counted = crash_at(m, 0)
        train(tiny(2), tmp_path / "count", device="cpu")
    per_save = len(counted)
    assert per_save >= 8  # rmtree, save_file, fsync ×3, replace, fsync, write_text, rmtree…
    for k in range(1, per_save + 1):  # a resumed save keeps the one before (two are kept): no call more
        run = tmp_path / f"crash-{k}"
        train(tiny(2), run, device="cpu")  # a good checkpoint at step 2
        with monkeypatch.context() as m:
            crash_at(m, k)
            with pytest.raises(Crash):
                train(tiny(4), run, resume=True, device="cpu")  # dies while saving step 4
        assert weights(run)[1] in (2, 4), k  # latest or the fallback names a complete checkpoint
        train(tiny(4), run, resume=True, device="cpu")
        tensors, step = weights(run)
        assert step == 4 and all(torch.equal(tensors[key], reference[key]) for key in reference), k


def test_a_second_save_of_a_step_keeps_the_first(tmp_path, monkeypatch):
    """The Ctrl-C-on-a-checkpoint-step case: saving step 4 again must not touch the saved step 4."""
    tensors = {"w": torch.ones(3)}
    save_checkpoint(tmp_path, 4, tensors, {"step": 4, "config": {}})
    with monkeypatch.context() as m:
        crash_at(m, 1)
        save_checkpoint(tmp_path, 4, {"w": torch.zeros(3)}, {"step": 4, "config": {}})  # no filesystem step at all
    assert torch.equal(load_checkpoint(tmp_path)[0]["w"], torch.ones(3))


def test_a_broken_latest_falls_back_to_the_newest_complete_checkpoint(tmp_path, capsys):
    save_checkpoint(tmp_path, 2, {"w": torch.ones(1)}, {"step": 2, "config": {}})
    (tmp_path / "checkpoints" / "latest").write_text("step-00000009")
    tensors, state = load_checkpoint(tmp_path)
    assert state["step"] == 2
    assert "latest names step-00000009, which is missing or incomplete; using step-00000002" in capsys.readouterr().err


def test_kill_9_at_random_moments_then_resume_reaches_the_uninterrupted_weights(tmp_path):
    args = ["train", "-d", "gaussian", "--network", "cnn", *TINY, "--steps", "120", "--checkpoint-every", "7",
            "--device", "cpu"]
    cli = [sys.executable, "-m", "diffkit"]
    subprocess.run([*cli, *args, "--out", str(tmp_path / "full")], check=True, capture_output=True)
    run, rng, kills, seen = tmp_path / "run", random.Random(0), 0, None
    latest = run / "checkpoints" / "latest"
    proc = subprocess.Popen([*cli, *args, "--out", str(run)], stderr=subprocess.DEVNULL)
    while kills < 3:
        while proc.poll() is None and (not latest.exists() or latest.read_text() == seen):
            time.sleep(0.02)  # until this process has saved a checkpoint of its own
        time.sleep(rng.uniform(0.0, 0.3))
        if proc.poll() is not None:
            break
        proc.kill()  # SIGKILL: no handler runs
        proc.wait()
        kills, seen = kills + 1, latest.read_text()
        proc = subprocess.Popen([*cli, "train", "--resume", "--out", str(run)], stderr=subprocess.DEVNULL)
    assert proc.wait() == 0 and kills >= 1
    a, b = load_file(next((tmp_path / "full" / "checkpoints").glob("step-*/weights.safetensors"))), \
        load_file(next((run / "checkpoints").glob("step-*/weights.safetensors")))
    assert all(torch.equal(a[k], b[k]) for k in a)
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log] == [50, 100, 120]


class Diverging(GaussianDiffusion):
    """Gaussian diffusion whose loss turns into NaN from its `after`-th call on."""

    calls = 0
    after = 52

    def training_losses(self, network, x0, t, noise, params=None):
        Diverging.calls += 1
        losses = super().training_losses(network, x0, t, noise, params)
        return losses * float("nan") if Diverging.calls > self.after else losses


class DivergingPlugin:
    @staticmethod
    @hookimpl
    def register_degradations(register):
        register(Diverging, name="diverging")


def test_divergence_stops_with_one_line_and_the_last_good_checkpoint_samples(tmp_path, register_plugin, capsys):
    from diffkit.cli import main

    register_plugin(DivergingPlugin, "diverging-plugin")
    Diverging.calls = 0
    run = tmp_path / "run"
    with pytest.raises(SystemExit) as stopped:
        main(["train", "-d", "diverging", "--network", "cnn", "-o", "T=20", "-o", "hidden=4,8", "-o", "time_features=8",
              "--batch-size", "8", "--steps", "60", "--checkpoint-every", "10", "--device", "cpu", "--out", str(run)])
    lines = capsys.readouterr().err.strip().splitlines()
    assert stopped.value.code == 1
    assert lines[-1] == ("Error: training diverged at step 53: the loss or its gradients are not finite (try a lower "
                         "--lr); the last good checkpoint (step 50) is kept; --resume continues from it")
    log = (run / "log.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in log] == [50]  # valid JSON, no NaN
    samples = Run.load(run, "cpu").sample(4, steps=3)
    assert samples.meta["training_step"] == 50 and samples.images.float().std() > 0


def test_a_second_training_into_the_same_folder_is_refused_and_sigterm_checkpoints(tmp_path):
    run = tmp_path / "run"
    cli = [sys.executable, "-m", "diffkit", "train", "-d", "gaussian", "--network", "cnn", *TINY, "--device", "cpu",
           "--out", str(run)]
    first = subprocess.Popen([*cli, "--steps", "1000000", "--checkpoint-every", "1000000"], stderr=subprocess.PIPE,
                             text=True, env={**os.environ, "COLUMNS": "200"})
    deadline = time.time() + 120
    while not (run / "log.jsonl").exists() and time.time() < deadline:
        time.sleep(0.1)
    second = subprocess.run([*cli, "--steps", "5"], capture_output=True, text=True)
    assert second.returncode == 1
    assert second.stderr.strip() == (f"Error: {run} is in use by another diffkit process (PID {first.pid}); wait "
                                     f"for it to finish or choose another --out")
    resume = subprocess.run([*cli[:3], "train", "--resume", "--out", str(run)], capture_output=True, text=True)
    assert resume.returncode == 1 and f"(PID {first.pid})" in resume.stderr
    first.send_signal(signal.SIGTERM)
    _, err = first.communicate(timeout=60)
    assert first.returncode == 143, err
    assert "checkpoint saved, continue with --resume" in err
    assert load_checkpoint(run)[1]["step"] >= 50


@pytest.mark.parametrize("delay", [0.3, 0.8, 1.5])
def test_ctrl_c_while_importing_is_one_line_and_exit_130(delay):
    """`plugins` imports torch inside the plugins' hooks: Ctrl-C lands in diffkit's imports or in torch's."""
    proc = subprocess.Popen([sys.executable, "-m", "diffkit", "plugins"], stderr=subprocess.PIPE, text=True,
                            stdout=subprocess.DEVNULL)
    time.sleep(delay)  # importing torch and the plugins takes longer than this
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert (proc.returncode, err.strip()) == (130, "Error: interrupted")


def test_a_torn_log_line_is_skipped_with_a_warning_and_a_fresh_run_starts_a_new_log(tmp_path, capsys):
    from rich.console import Console

    run = tmp_path / "run"
    train(tiny(50, checkpoint_every=50), run, device="cpu")
    with open(run / "log.jsonl", "a") as f:
        f.write('{"step": 60, "lo')  # killed mid-write
    train(tiny(51, checkpoint_every=50), run, resume=True, device="cpu", console=Console(stderr=True))
    assert "skipped 1 unreadable line(s)" in capsys.readouterr().err
    assert [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()] == [50, 51]
    stale = tmp_path / "stale"
    stale.mkdir()
    (stale / "log.jsonl").write_text('{"step": 999}\n')  # a folder with a log but no checkpoint
    train(tiny(2), stale, device="cpu")
    assert [json.loads(line)["step"] for line in (stale / "log.jsonl").read_text().splitlines()] == [2]


def test_compare_pairs_that_differ_only_in_options_get_their_own_files(tmp_path):
    from diffkit_eval.compare import read_config

    config = tmp_path / "c.toml"
    config.write_text('[[models]]\nname = "m"\nnetwork = "cnn"\ndegradation_options = { T = 10 }\n'
                      'network_options = { hidden = [4], time_features = 8 }\n'
                      'samplers = [{ name = "ddim", steps = 5 }, { name = "ddim", steps = 5, options = { eta = 1.0 } },'
                      ' { name = "ddim", steps = 5, options = { eta = 0.5 } }]\n')
    _, _, pairs = read_config(config)
    slugs = [p.slug() for p in pairs]
    assert len(set(slugs)) == 3 and slugs[0] == "m__ddim-5" and slugs[1].startswith("m__ddim-5-")


def test_a_lock_file_linked_elsewhere_is_refused_and_its_target_left_alone(tmp_path):
    from diffkit.errors import DiffkitError
    from diffkit.runlock import run_lock

    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    run = tmp_path / "run"
    run.mkdir()
    (run / ".lock").symlink_to(victim)
    with pytest.raises(DiffkitError, match="is a symbolic link, which diffkit never writes through"):
        with run_lock(run):
            pass
    assert victim.read_text() == "precious"


def test_two_compares_into_one_folder_exactly_one_runs(tmp_path):
    """The second compare into a folder another compare holds is one line naming the holder's PID."""
    from click.testing import CliRunner

    from diffkit.runlock import run_lock

    from conftest import invoke

    (tmp_path / "c.toml").write_text('[compare]\nsamples = 10\n[[samples]]\nname = "x"\npath = "x.npz"\n')
    import numpy as np
    np.savez(tmp_path / "x.npz", images=np.zeros((10, 28, 28), np.uint8))
    with run_lock(tmp_path / "report", "report folder"):
        result = invoke(CliRunner(), "compare", tmp_path / "c.toml", "--out", tmp_path / "report")
    assert result.exit_code == 1 and f"is in use by another diffkit process (PID {os.getpid()})" in result.output
    assert not (tmp_path / "report" / "report.html").exists()


def test_a_flipped_byte_in_the_newest_checkpoint_falls_back_to_the_one_before(tmp_path):
    """Two complete checkpoints are kept; the newest one's tensors are checked against their recorded sha256,
    so a corrupt newest checkpoint is never carried forward, and a user's backup folder survives pruning."""
    run = tmp_path / "run"
    train(tiny(4, checkpoint_every=2), run, device="cpu")
    folder = run / "checkpoints"
    backup = folder / "step-00000002-good-backup"
    shutil.copytree(folder / "step-00000002", backup)
    (folder / "step-notes").mkdir()
    train(tiny(6, checkpoint_every=2), run, resume=True, device="cpu")
    assert sorted(p.name for p in folder.iterdir()) == ["latest", "step-00000002-good-backup", "step-00000004",
                                                        "step-00000006", "step-notes"]
    weights_file = folder / "step-00000006" / "weights.safetensors"
    data = bytearray(weights_file.read_bytes())
    data[-3] ^= 0xFF
    weights_file.write_bytes(bytes(data))
    warnings = []
    _, state = load_checkpoint(run, warnings.append)
    assert state["step"] == 4 and "corrupt checkpoint" in warnings[0] and "using step-00000004" in warnings[0]
    resumed = train(tiny(8, checkpoint_every=2), run, resume=True, device="cpu")
    assert resumed.step == 8


def test_a_full_disk_during_a_checkpoint_is_one_line_and_the_last_checkpoint_stands(tmp_path, monkeypatch):
    """ENOSPC injected into the second save: one line naming the path, the free space and the bytes needed;
    the first checkpoint is complete, loads and resumes, and no half-written folder is left behind."""
    import errno

    from click.testing import CliRunner

    from conftest import invoke

    real, calls = checkpoint.save_file, []

    def fill_up(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(checkpoint, "save_file", fill_up)
    run = tmp_path / "run"
    result = invoke(CliRunner(), "train", "--network", "cnn", *TINY, "--steps", 4, "--checkpoint-every", 2, "--out", run)
    assert result.exit_code == 1
    message = result.output.strip().splitlines()[-1]
    assert message.startswith("Error: no space left to write") and "step-00000004" in message
    assert "free on its device, about" in message and "MiB needed" in message and "what was written before is kept" in message
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["latest", "step-00000002"]
    monkeypatch.setattr(checkpoint, "save_file", real)
    assert train(tiny(4), run, resume=True, device="cpu").step == 4


def test_a_full_disk_during_any_atomic_write_keeps_the_old_file(tmp_path, monkeypatch):
    import errno
    from pathlib import Path

    from diffkit.atomic import write_text
    from diffkit.errors import DiffkitError

    target = tmp_path / "report.md"
    target.write_text("the old report")

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(DiffkitError, match=r"no space left to write .*report.md \(.* free on its device\)"):
        write_text(target, "the new report")
    monkeypatch.undo()
    assert target.read_text() == "the old report" and [p.name for p in tmp_path.iterdir()] == ["report.md"]


def test_folders_linked_elsewhere_are_never_written_through(tmp_path, capsys):
    """checkpoints/ and a compare folder's samples/ as links: one line before any work; tensorboard/ as a link:
    one warning, and logging is off for that run."""
    from click.testing import CliRunner

    from conftest import invoke

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoints").symlink_to(elsewhere)
    result = invoke(CliRunner(), "train", "--network", "cnn", *TINY, "--steps", 2, "--out", run)
    assert result.exit_code == 1 and "checkpoints is a symbolic link; diffkit writes checkpoints only into a real " \
                                      "folder" in result.output
    (tmp_path / "c.toml").write_text('[compare]\nsamples = 10\n[[samples]]\nname = "x"\npath = "x.npz"\n')
    import numpy as np
    np.savez(tmp_path / "x.npz", images=np.zeros((10, 28, 28), np.uint8))
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "samples").symlink_to(elsewhere)
    result = invoke(CliRunner(), "compare", tmp_path / "c.toml", "--out", tmp_path / "report")
    assert result.exit_code == 1 and "samples is a symbolic link" in result.output
    assert list(elsewhere.iterdir()) == []

    pytest.importorskip("torch.utils.tensorboard")
    from diffkit_tensorboard import log_metrics, writer

    board = tmp_path / "board"
    board.mkdir()
    (board / "tensorboard").symlink_to(elsewhere)
    writer.cache_clear()
    log_metrics(run_dir=board, step=1, metrics={"train/loss": 1.0})
    assert "tensorboard is a symbolic link; TensorBoard logging is off" in capsys.readouterr().err
    assert list(elsewhere.iterdir()) == []


def test_a_missing_prior_or_a_newer_config_is_one_line(tmp_path):
    from safetensors.torch import save_file

    from diffkit.errors import DiffkitError

    run = tmp_path / "run"
    train(make_config(degradation="blur", network="cnn", options=TINY_OPTIONS, steps=2, batch_size=8), run,
          device="cpu")
    folder = run / "checkpoints" / "step-00000002"
    tensors = {k: v for k, v in load_file(folder / "weights.safetensors").items() if not k.startswith("prior.")}
    save_file(tensors, folder / "weights.safetensors")
    state = json.loads((folder / "state.json").read_text())
    state["tensors_sha256"] = checkpoint.tensors_sha256(tensors)  # an edit that keeps the hash consistent
    (folder / "state.json").write_text(json.dumps(state))
    with pytest.raises(DiffkitError, match="holds no usable prior .*prior tensors missing: chol, means, weights"):
        Run.load(run, device="cpu")
    state["config"]["sampler_cache"] = 3
    state["versions"]["diffkit"] = "9.0.0"
    (folder / "state.json").write_text(json.dumps(state))
    with pytest.raises(DiffkitError, match=r"was written by diffkit 9.0.0 \(this is .*\) and its config does not load "
                                           r"here: unknown config key 'sampler_cache'"):
        Run.load(run, device="cpu")


def test_sample_counts_have_an_upper_bound(tmp_path):
    from diffkit.errors import DiffkitError

    run = Run.build(make_config(network="cnn", options=TINY_OPTIONS))
    for n in (0, 10**7, True, 2.5):
        with pytest.raises(DiffkitError, match="-n must be a positive integer up to 1,000,000"):
            run.sample(n)


def test_evaluate_n_10_of_a_million_images_costs_no_more_memory_than_of_ten(tmp_path):
    """-n reads only the leading rows of an .npz member: the peak memory of `evaluate -n 10` on a 1,000,000-image
    file (784 MB of pixels, compressed to a few MB) stays within 150 MB of the same command on a 10-image file."""
    import numpy as np

    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (10, 28, 28), dtype=np.uint8)
    np.savez_compressed(tmp_path / "small.npz", images=small)
    big = np.zeros((1_000_000, 28, 28), np.uint8)
    big[:10] = small
    np.savez_compressed(tmp_path / "big.npz", images=big)
    del big

    def peak_mb(path):
        probe = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, capture_output=True); "
                 "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)")
        out = subprocess.run([sys.executable, "-c", probe, sys.executable, "-m", "diffkit", "evaluate", str(path),
                              "-n", "10", "--features", "classifier", "--device", "cpu"],
                             capture_output=True, text=True, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        return float(out.stdout.strip().splitlines()[-1])

    small_peak, big_peak = peak_mb(tmp_path / "small.npz"), peak_mb(tmp_path / "big.npz")
    assert big_peak - small_peak < 150, (small_peak, big_peak)


def test_keep_checkpoints_sets_how_many_complete_checkpoints_stay(tmp_path):
    run = tmp_path / "run"
    train(make_config(network="cnn", options=TINY_OPTIONS, steps=8, batch_size=8, checkpoint_every=2,
                      keep_checkpoints=3), run, device="cpu")
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["latest", "step-00000004", "step-00000006",
                                                                      "step-00000008"]
    from diffkit.errors import DiffkitError

    with pytest.raises(DiffkitError, match="keep-checkpoints must be a positive integer, got 0"):
        make_config(network="cnn", keep_checkpoints=0)
