"""The Run object and the Python API: one place resolves configs, plans sampling and owns the seeds."""

import json
import signal
import threading

import numpy as np
import pytest
import torch

import diffkit
from diffkit.config import RunConfig
from diffkit.errors import DiffkitError
from diffkit.run import Run, make_config, resolve_config

from conftest import TINY, invoke

TINY_OPTIONS = {"T": 20, "hidden": "4,8", "time_features": 8}


def test_resolve_config_is_pure_and_complete():
    given = RunConfig(degradation="blur", network="cnn", degradation_options={"T": 3})
    resolved = resolve_config(given)
    assert given.sampler is None and given.degradation_options == {"T": 3}  # untouched
    assert resolved.sampler == "cold-naive" and resolved.degradation_options["sigma"] == 0.8
    assert resolved.network_options["hidden"] == [16, 32, 32, 16]


def test_make_config_routes_options_to_their_component():
    config = make_config("quick", ["T=50", "spacing=karras"], steps=3)
    assert (config.steps, config.degradation_options["T"], config.sampler_options["spacing"]) == (3, 50, "karras")
    with pytest.raises(DiffkitError, match="unknown option 'colour'"):
        make_config(options={"colour": "red"})


def test_plan_resolves_sampler_steps_and_nfe_once():
    run = Run.build(make_config(degradation="blur", network="cnn", options={"T": 5, "hidden": "4", "time_features": 8}))
    plan = run.plan()
    assert (plan.name, plan.steps, plan.nfe) == ("cold-naive", 5, 5)
    direct = run.plan("direct", steps=4)  # direct always takes one step: it records one, not four
    assert (direct.name, direct.steps, direct.nfe) == ("direct", 1, 1)
    with pytest.raises(DiffkitError, match="--steps must be between 1 and T=5, got 999"):
        run.plan(steps=999)
    with pytest.raises(DiffkitError, match="sampler 'ddim' does not support degradation 'blur'"):
        run.plan("ddim")


def test_python_api_trains_loads_samples_and_evaluates_off_the_main_thread(tmp_path):
    """A notebook may run training in a worker thread, where Python allows no signal handlers."""
    result = {}

    def work():
        result["run"] = diffkit.train(tmp_path / "run", network="cnn", options=TINY_OPTIONS, steps=3, batch_size=8,
                                      device="cpu", console=None)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    trained = result["run"]
    assert trained.step == 3 and trained.device.type == "cpu" and trained.config.precision == "fp32"
    run = diffkit.load(tmp_path / "run", device="cpu")
    samples = run.sample(12, steps=2, seed=4)
    assert samples.images.shape == (12, 1, 28, 28) and samples.images.dtype == torch.uint8
    assert (samples.meta["steps"], samples.meta["device"], samples.meta["precision"]) == (2, "cpu", "fp32")
    assert torch.equal(samples.images, run.sample(12, steps=2, seed=4).images)  # the seed decides
    samples.save(tmp_path / "s.npz")
    assert np.load(tmp_path / "s.npz")["images"].shape == (12, 28, 28)
    scores = diffkit.evaluate(samples, device="cpu")
    assert scores["n"] == 12 and scores["metrics"]["fid"].value > 0


def test_a_checkpoint_step_interrupted_is_saved_once(tmp_path, monkeypatch):
    import contextlib

    import diffkit.trainer as trainer

    saves = []
    real_save = trainer.save_checkpoint
    monkeypatch.setattr(trainer, "save_checkpoint", lambda *a, **kw: saves.append(a[1]) or real_save(*a, **kw))
    monkeypatch.setattr(trainer, "deferred_interrupt", lambda: contextlib.nullcontext([signal.SIGTERM]))
    config = make_config(network="cnn", options=TINY_OPTIONS, steps=5, batch_size=8, checkpoint_every=1)
    with pytest.raises(trainer.Interrupted) as stopped:
        trainer.train(config, tmp_path / "run", device="cpu")
    assert saves == [1] and stopped.value.exit_code == 143  # SIGTERM: 128 + 15


def test_precision_is_recorded_in_the_config_and_the_samples(runner, tmp_path):
    result = invoke(runner, "train", "-d", "gaussian", "--network", "cnn", *TINY, "--steps", 2, "--precision", "bf16",
                    "--device", "cpu", "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert "on cpu (bf16)" in result.output
    assert json.loads((tmp_path / "run" / "config.json").read_text())["precision"] == "bf16"
    result = invoke(runner, "sample", tmp_path / "run", "-n", 3, "--steps", 2, "--precision", "bf16",
                    "--out", tmp_path / "s.npz")
    assert result.exit_code == 0, result.output
    meta = json.loads(str(np.load(tmp_path / "s.npz")["meta"]))
    assert (meta["precision"], meta["device"], meta["config"]["precision"]) == ("bf16", "cpu", "bf16")


def test_auto_device_trains_and_a_missing_gpu_is_one_line(runner, tmp_path):
    result = invoke(runner, "train", "-d", "gaussian", "--network", "cnn", *TINY, "--steps", 1, "--device", "auto",
                    "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    if not torch.cuda.is_available():
        bad = invoke(runner, "sample", tmp_path / "run", "--device", "cuda", "--out", tmp_path / "s.npz")
        assert bad.exit_code == 1 and bad.output.strip() == \
            "Error: --device cuda: CUDA is not available on this machine; use --device cpu or auto"
    bad = invoke(runner, "sample", tmp_path / "run", "--device", "tpu", "--out", tmp_path / "s.npz")
    assert bad.exit_code == 1 and "unknown device 'tpu'" in bad.output


def test_restore_with_too_many_steps_is_one_line(runner, tmp_path):
    run = tmp_path / "run"
    assert invoke(runner, "train", "-d", "blur", "--network", "cnn", "-o", "T=3", "-o", "hidden=4", "-o",
                  "time_features=8", "--steps", 1, "--batch-size", 8, "--out", run).exit_code == 0
    result = invoke(runner, "restore", run, "-n", 10, "--steps", 999)
    assert result.exit_code == 1 and result.output.strip() == "Error: --steps must be between 1 and T=3, got 999"


def test_config_show_prints_toml_that_trains_the_same_run_again(runner, tmp_path):
    first = tmp_path / "first"
    result = invoke(runner, "train", "-d", "blur", "--network", "cnn", "-o", "T=3", "-o", "sigma=0.8", "-o", "hidden=4",
                    "-o", "time_features=8", "--steps", 2, "--batch-size", 8, "--seed", 7, "--out", first)
    assert result.exit_code == 0, result.output
    shown = invoke(runner, "config", "show", first)
    assert shown.exit_code == 0 and "seed = 7" in shown.output
    (tmp_path / "run.toml").write_text(shown.output)
    again = invoke(runner, "train", "--config", tmp_path / "run.toml", "--steps", 3, "--out", tmp_path / "again")
    assert again.exit_code == 0, again.output
    a = json.loads((first / "config.json").read_text())
    b = json.loads((tmp_path / "again" / "config.json").read_text())
    assert b["steps"] == 3 and {**a, "steps": 3} == b


def test_training_figures_reach_tensorboard(runner, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    result = invoke(runner, "train", "-d", "gaussian", "--network", "cnn", *TINY, "--steps", 2, "--out", run)
    assert result.exit_code == 0, result.output
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    assert {"train/loss", "train/images_per_s", "train/lr"} <= set(events.Tags()["scalars"])
    (loss,) = events.Scalars("train/loss")
    assert loss.step == 2 and loss.value == pytest.approx(json.loads((run / "log.jsonl").read_text())["loss"])


def test_one_train_builds_the_network_once(tmp_path, monkeypatch):
    from diffkit_networks.cnn import CNN

    built = []
    real = CNN.__init__

    def counted(self, *args, **kwargs):
        built.append(1)
        real(self, *args, **kwargs)

    monkeypatch.setattr(CNN, "__init__", counted)
    diffkit.train(tmp_path / "run", network="cnn", options=TINY_OPTIONS, steps=2, batch_size=8, device="cpu")
    assert len(built) == 1  # the EMA copy is a deepcopy, not a second construction


def test_an_interrupted_sample_draws_only_the_batches_it_lacks(tmp_path, monkeypatch):
    run = Run.build(make_config(network="cnn", options=TINY_OPTIONS))
    request = dict(steps=2, seed=3, batch_size=3, trajectory=2)
    whole = run.sample(10, **request)  # 4 batches: 3, 3, 3, 1
    real, drawn = run._sample_batch, []

    def stop_at_batch_2(plan, index, *args):
        if index == 2:
            raise KeyboardInterrupt
        return real(plan, index, *args)

    monkeypatch.setattr(run, "_sample_batch", stop_at_batch_2)
    with pytest.raises(KeyboardInterrupt):
        run.sample(10, batches=tmp_path / "b", **request)
    assert sorted(p.name for p in (tmp_path / "b").glob("batch-*")) == ["batch-000000.npz", "batch-000001.npz"]
    monkeypatch.setattr(run, "_sample_batch", lambda plan, index, *args: drawn.append(index) or real(plan, index, *args))
    resumed = run.sample(10, batches=tmp_path / "b", **request)
    assert drawn == [2, 3] and torch.equal(resumed.images, whole.images)
    assert all(torch.equal(a, b) for a, b in zip(resumed.path, whole.path, strict=True))  # batch 0's path, read back
    drawn.clear()
    other = run.sample(10, batches=tmp_path / "b", **{**request, "seed": 4})  # another request: the folder is emptied
    assert drawn == [0, 1, 2, 3] and not torch.equal(other.images, whole.images)


def count_calls(monkeypatch, *names):
    """{name: calls} of functions that diffkit's modules import by name, counted wherever they are called from."""
    import sys

    calls = dict.fromkeys(names, 0)
    for module in [m for n, m in sys.modules.items() if n.split(".")[0] in ("diffkit", "diffkit_eval")]:
        for name in names:
            real = getattr(module, name, None)
            if callable(real):
                def counted(*args, _real=real, _name=name, **kwargs):
                    calls[_name] += 1
                    return _real(*args, **kwargs)
                monkeypatch.setattr(module, name, counted)
    return calls


def test_a_command_resolves_its_config_device_and_precision_once(runner, tmp_path, monkeypatch):
    import importlib

    importlib.import_module("diffkit.trainer")  # loaded before counting: the CLI imports it only when it trains

    calls = count_calls(monkeypatch, "resolve_config", "resolve_device", "resolve_precision")
    result = invoke(runner, "train", "-d", "gaussian", "--network", "cnn", *TINY, "--steps", 2, "--device", "cpu",
                    "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert calls == {"resolve_config": 1, "resolve_device": 1, "resolve_precision": 1}
    calls.update(dict.fromkeys(calls, 0))
    result = invoke(runner, "sample", tmp_path / "run", "-n", 2, "--steps", 2, "--device", "cpu",
                    "--out", tmp_path / "s.npz")
    assert result.exit_code == 0, result.output
    assert calls == {"resolve_config": 0, "resolve_device": 1, "resolve_precision": 1}  # a run's config is recorded resolved


def test_dir_lists_the_public_api():
    assert {"train", "load", "evaluate", "hookimpl", "__version__"} <= set(dir(diffkit))
    assert callable(diffkit.train) and callable(diffkit.evaluate)
