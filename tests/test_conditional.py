"""Class conditioning and classifier-free guidance, and the promise that unconditional runs are unchanged."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import diffkit

REFERENCE = Path(__file__).parent / "data" / "unconditional-reference.safetensors"
UNET = {"base_channels": 8, "channel_mults": "1,2", "patch_size": 2, "heads": 2, "groups": 4}
# The tiny runs whose EMA weights and samples tests/data/unconditional-reference.safetensors holds, as the code
# before class conditioning made them (3 steps of 8 images, seed 3; 6 samples, seed 1, batches of 4).
REFERENCE_RUNS = {
    "cnn-gaussian": (dict(degradation="gaussian", network="cnn", options={"T": 50, "hidden": "4,8", "time_features": 8}),
                     "heun"),
    "unet-flow": (dict(degradation="flow", network="unet", options=UNET), "dpm++2m"),
    "unet-blur": (dict(degradation="blur", network="unet", options=UNET), "cold"),
}


@pytest.fixture
def one_thread():
    """The reference was made on one thread: more threads sum gradients in another order."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("name", REFERENCE_RUNS)
def test_unconditional_runs_keep_their_weights_and_samples_bit_for_bit(tmp_path, name, one_thread):
    settings, sampler = REFERENCE_RUNS[name]
    reference = {k.removeprefix(f"{name}."): v for k, v in load_file(REFERENCE).items() if k.startswith(f"{name}.")}
    run = diffkit.train(tmp_path / name, steps=3, batch_size=8, seed=3, checkpoint_every=3, device="cpu", **settings)
    weights = run.network.state_dict()
    assert set(weights) == {k.removeprefix("ema.") for k in reference if k.startswith("ema.")}
    for key, value in weights.items():
        assert torch.equal(value, reference[f"ema.{key}"]), key
    samples = diffkit.load(tmp_path / name, device="cpu").sample(6, sampler=sampler, steps=4, seed=1, batch_size=4)
    assert torch.equal(samples.images, reference["samples"])


class Recorder(torch.nn.Module):
    """A stand-in network whose prediction is its label (the null label 10 counts as 0), recording each call's
    batch size: so a guided prediction can be worked out by hand and evaluations counted."""

    classes = 10

    def __init__(self):
        super().__init__()
        self.batches = []

    def forward(self, x, t, labels=None):
        self.batches.append(len(x))
        value = torch.zeros(len(x)) if labels is None else torch.where(labels == 10, 0, labels).float()
        return x * 0 + value.view(-1, 1, 1, 1) / 10


def test_guidance_is_cond_plus_w_times_cond_minus_uncond_in_one_batched_call():
    from diffkit.denoiser import Denoiser
    from diffkit_cold.degradations import Blur, BlurOptions

    network, d = Recorder(), Blur(BlurOptions(T=5))
    x, t = torch.zeros(3, 1, 8, 8), torch.full((3,), 2)
    labels = torch.tensor([1, 3, 5])
    guided = Denoiser(network, d, labels, guidance=2.0, null_label=10).prediction(x, t)
    # cond = label/10, uncond = 0: cond + 2·(cond − 0) = 3·label/10
    assert torch.allclose(guided[:, 0, 0, 0], torch.tensor([0.3, 0.9, 1.5]))
    assert network.batches == [6]  # both halves in one call
    alone = Denoiser(network, d, labels, guidance=0.0, null_label=10)
    assert torch.allclose(alone(x, 2)[:, 0, 0, 0], torch.tensor([0.1, 0.3, 0.5])) and alone.evaluations == 1
    with pytest.raises(ValueError, match="guidance needs class labels"):
        Denoiser(network, d, None, guidance=1.0)


@pytest.mark.parametrize("degradation, sampler", [("gaussian", "heun"), ("gaussian", "dpm++2m"), ("flow", "euler"),
                                                  ("blur", "cold-heun"), ("pixelate", "cold"), ("blur", "direct")])
def test_a_guided_step_costs_two_evaluations_and_the_plan_says_so(degradation, sampler, monkeypatch):
    from diffkit.run import Run, make_config

    run = Run.build(make_config(degradation=degradation, network="cnn", conditional=True,
                                options={"T": 20, "hidden": "4", "time_features": 8}))
    recorder = Recorder()
    monkeypatch.setattr(run, "network", recorder)
    recorder.channels, recorder.image_size = 1, 28
    run.degradation.fit_prior(torch.rand(200, 1, 28, 28) * 2 - 1, torch.Generator().manual_seed(0))
    for guidance in (0.0, 1.5):
        plan = run.plan(sampler, steps=4, guidance=guidance)
        recorder.batches.clear()
        samples = run.sample(5, plan=plan, classes="3,7")
        assert sum(recorder.batches) == 5 * plan.nfe, (guidance, recorder.batches)
        assert samples.meta["guidance"] == guidance and samples.meta["classes"] == {"3": 3, "7": 2}
    assert plan.nfe == 2 * run.plan(sampler, steps=4).nfe


def test_labels_are_balanced_in_class_order_and_checked():
    from diffkit.errors import DiffkitError
    from diffkit.run import Run, make_config

    run = Run.build(make_config(network="cnn", conditional=True, options={"T": 20, "hidden": "4", "time_features": 8}))
    assert run.labels(20).tolist() == [c for c in range(10) for _ in range(2)]
    assert run.labels(4, "3,7").tolist() == [3, 3, 7, 7] and run.labels(3, 7).tolist() == [7, 7, 7]
    assert run.labels(2, "none").tolist() == [10, 10]
    for bad, message in ((10, "class 10 is not a class of mnist: use 0..9"), ("seven", "class numbers like 7"),
                         ([-1], "class -1 is not a class")):
        with pytest.raises(DiffkitError, match=message):
            run.labels(5, bad)
    plain = Run.build(make_config(network="cnn", options={"T": 20, "hidden": "4", "time_features": 8}))
    with pytest.raises(DiffkitError, match="need a class-conditional run"):
        plain.labels(5, 7)
    with pytest.raises(DiffkitError, match="--guidance needs a class-conditional run"):
        plain.plan(guidance=1.0)
    for bad in (-1, True, float("nan"), "2"):
        with pytest.raises(DiffkitError, match="--guidance must be a number in 0..100"):
            run.plan(guidance=bad)


@pytest.mark.parametrize("network, options", [("cnn", {"hidden": [4, 8], "time_features": 8}), ("unet", UNET)])
def test_a_conditional_network_starts_as_the_unconditional_one_and_learns_what_labels_add(network, options):
    from diffkit.run import build_network

    torch.manual_seed(0)
    _, plain = build_network(network, options, 1, 28)
    torch.manual_seed(0)
    _, conditional = build_network(network, options, 1, 28, classes=10)
    extra = set(conditional.state_dict()) - set(plain.state_dict())
    assert extra == {"label_embedding.table.weight"}
    for key, value in plain.state_dict().items():
        assert torch.equal(value, conditional.state_dict()[key]), key
    x, t = torch.randn(4, 1, 28, 28), torch.tensor([1, 5, 9, 13])
    labels, null = torch.tensor([0, 1, 2, 3]), torch.full((4,), 10)
    assert torch.equal(conditional(x, t, labels), plain(x, t))  # zero label embeddings at first
    with torch.no_grad():
        conditional.label_embedding.table.weight.normal_()
    assert not torch.allclose(conditional(x, t, labels), conditional(x, t, null))
    assert torch.equal(conditional(x, t), conditional(x, t, null))  # no labels means the null label


def test_a_network_without_classes_cannot_be_conditional(register_plugin):
    from diffkit import hookimpl
    from diffkit.errors import DiffkitError
    from diffkit.network import Network
    from diffkit.run import make_config

    class Plain(Network):
        def __init__(self, options, channels, image_size):
            super().__init__(options, channels, image_size)
            self.scale = torch.nn.Parameter(torch.ones(1))

        def forward(self, x_t, t):
            return self.scale * x_t

    class Plugin:
        @hookimpl
        def register_networks(self, register):
            register(Plain, name="plain")

    register_plugin(Plugin(), "plain-network")
    with pytest.raises(DiffkitError, match="network 'plain' cannot be class-conditional"):
        make_config(network="plain", conditional=True)
    assert make_config(network="plain").conditional is False


def test_train_conditional_then_sample_a_grid_with_one_class_a_row(runner, tmp_path):
    import json

    import numpy as np
    from PIL import Image

    from conftest import TINY, invoke

    run = tmp_path / "run"
    result = invoke(runner, "train", "--network", "cnn", *TINY, "--steps", 2, "--conditional", "--cond-dropout", 0.2,
                    "--out", run)
    assert result.exit_code == 0, result.output
    config = json.loads((run / "config.json").read_text())
    assert config["conditional"] is True and config["cond_dropout"] == 0.2
    result = invoke(runner, "sample", run, "-n", 30, "--steps", 2, "--guidance", 2, "--out", tmp_path / "s.npz",
                    "--grid", tmp_path / "g.png")
    assert result.exit_code == 0, result.output
    assert "guidance 2" in result.output and "4 NFE" in result.output
    with np.load(tmp_path / "s.npz") as data:
        assert data["labels"].tolist() == [c for c in range(10) for _ in range(3)]
        assert json.loads(str(data["meta"]))["guidance"] == 2.0
    assert Image.open(tmp_path / "g.png").size == (2 + 3 * 30, 2 + 10 * 30)  # 10 rows (one a class) of 3
    for args, message in ((["--class", "12"], "class 12 is not a class of mnist"),
                          (["--guidance", "-2"], "--guidance must be a number in 0..100"),
                          (["--classes", "none", "--guidance", "1"], "--guidance needs classes to guide towards")):
        result = invoke(runner, "sample", run, "-n", 4, *args, "--out", tmp_path / "x.npz")
        assert result.exit_code != 0 and message in result.output and "Traceback" not in result.output, args
    plain = tmp_path / "plain"
    assert invoke(runner, "train", "--network", "cnn", *TINY, "--steps", 1, "--out", plain).exit_code == 0
    result = invoke(runner, "sample", plain, "-n", 4, "--class", "7", "--out", tmp_path / "x.npz")
    assert result.exit_code == 1 and "trained without --conditional" in result.output
    assert not (tmp_path / "x.npz").exists()


def test_training_shows_the_null_label_at_the_cond_dropout_rate(tmp_path, monkeypatch):
    from diffkit.run import Run, make_config
    from diffkit.trainer import TrainLoop

    config = make_config(network="cnn", options={"hidden": "4", "time_features": 8, "T": 20}, batch_size=1000,
                         conditional=True, cond_dropout=0.3)
    loop = TrainLoop.fresh(Run.build(config), tmp_path / "run")
    seen = {}

    def losses(network, x0, t, noise, params=None):
        seen["labels"] = network.keywords["labels"]
        return (network(x0, t) - x0).abs().flatten(1).mean(1)

    monkeypatch.setattr(loop.run.degradation, "training_losses", losses)
    loop.forward_backward(0)
    images, labels = loop.batches(0)
    null = seen["labels"] == 10
    assert 0.25 < null.float().mean() < 0.35  # 0.3 ± 3 standard errors (0.0145 at 1,000 images)
    assert torch.equal(seen["labels"][~null], labels[~null])  # the others keep their image's own label


def test_conditional_scores_by_hand():
    from diffkit_eval.metrics import conditional_scores, fid_statistics

    g = torch.Generator().manual_seed(0)
    reference = [torch.randn(40, 3, generator=g, dtype=torch.float64) + 5 * c for c in range(2)]
    class_references = [fid_statistics(r) for r in reference]
    # class 0: the reference's own features (FID 0); class 1: its features shifted by 2 in each of 3 dimensions
    # (FID = |Δμ|² = 12, the covariances being equal); two null-label images, left out of everything
    features = torch.cat([reference[0], reference[1] + 2, torch.zeros(2, 3, dtype=torch.float64)])
    labels = torch.tensor([0] * 40 + [1] * 40 + [2, 2])
    logits = torch.zeros(82, 2)
    logits[:30, 0] = 1  # 30 of class 0's 40 are classified 0, all 40 of class 1's are classified 1
    logits[30:80, 1] = 1
    scores = conditional_scores(logits, features, labels, class_references)
    accuracy = scores["conditioned_accuracy"]
    assert accuracy.value == pytest.approx(70 / 80) and accuracy.n == 80
    assert accuracy.std == pytest.approx((70 / 80 * 10 / 80 / 80) ** 0.5)
    assert scores["class_fid"].value == pytest.approx(6.0, abs=1e-6)  # (0 + 12) / 2
    assert scores["class_fid_worst"]["class"] == 1 and scores["class_fid_worst"]["fid"] == pytest.approx(12, abs=1e-6)


GUIDED_CONFIG = """
[compare]
samples = 100
features = ["classifier"]

[[models]]
name = "cond"
degradation = "blur"
network = "cnn"
conditional = true
steps = 3
batch_size = 8
degradation_options = { T = 4 }
network_options = { hidden = [4], time_features = 8 }
samplers = [{ name = "cold", steps = 2, guidance = [0, 2] }]

[[models]]
name = "plain"
degradation = "blur"
network = "cnn"
steps = 3
batch_size = 8
degradation_options = { T = 4 }
network_options = { hidden = [4], time_features = 8 }
samplers = [{ name = "cold", steps = 2 }]
"""


def test_compare_sweeps_guidance_scores_classes_and_draws_the_trade_off(runner, tmp_path, monkeypatch):
    import json

    from PIL import Image

    from diffkit_eval import figures

    from conftest import figure_keeper, invoke

    drawn = {}
    monkeypatch.setattr(figures, "figure", figure_keeper({"guidance.png"}, drawn))
    config = tmp_path / "guided.toml"
    config.write_text(GUIDED_CONFIG)
    result = invoke(runner, "compare", config, "--out", tmp_path / "report")
    assert result.exit_code == 0, result.output
    report = tmp_path / "report"
    rows = {r["label"]: r for r in json.loads((report / "metrics.json").read_text())["rows"]}
    guided, alone, plain = rows["cond / cold-2 w=2"], rows["cond / cold-2 w=0"], rows["plain / cold-2"]
    assert (guided["nfe"], alone["nfe"], plain["nfe"]) == (4, 2, 2)
    assert 0 <= guided["conditioned_accuracy"] <= 1 and guided["class_fid"] > 0 and "class_fid_worst" in guided
    assert "conditioned_accuracy" not in plain and plain["guidance"] is None
    trade, diversity = drawn["guidance.png"].axes
    (curve,) = trade.containers
    assert list(curve.lines[0].get_xdata()) == [alone["conditioned_accuracy"], guided["conditioned_accuracy"]]
    assert list(curve.lines[0].get_ydata()) == [alone["fid"], guided["fid"]]
    floor = next(ln for ln in trade.get_lines() if ln.get_label().startswith("floor"))
    assert list(floor.get_ydata()) == [rows[next(k for k in rows if k.startswith("floor"))]["fid"]] * 2
    assert "diffkit-mnist-v1" in trade.get_xlabel() and "diffkit-mnist-v1" in trade.get_ylabel()
    lines = {ln.get_label(): ln for ln in diversity.get_lines()}
    assert list(lines["cond: precision"].get_xdata()) == [0, 2]
    assert list(lines["cond: recall"].get_ydata()) == [alone["recall"], guided["recall"]]
    assert Image.open(report / "figures" / "grid-cond__cold-2-w2.png").size == (2 + 10 * 30, 2 + 10 * 30)
    markdown = (report / "report.md").read_text()
    assert "## Guidance" in markdown and "figures/guidance.png" in markdown
    again = invoke(runner, "compare", config, "--out", report)  # samples and scores reused, labels included
    assert again.exit_code == 0 and json.loads((report / "metrics.json").read_text())["rows"][0]["fid"] == \
        next(iter(rows.values()))["fid"]


def test_compare_refuses_guidance_on_an_unconditional_model(runner, tmp_path):
    from conftest import invoke

    config = tmp_path / "bad.toml"
    config.write_text(GUIDED_CONFIG.replace('samplers = [{ name = "cold", steps = 2 }]',
                                            'samplers = [{ name = "cold", steps = 2, guidance = [1] }]'))
    result = invoke(runner, "compare", config, "--out", tmp_path / "report")
    assert result.exit_code == 1 and "model 'plain': guidance needs conditional = true" in result.output
    config.write_text(GUIDED_CONFIG.replace("guidance = [0, 2]", 'guidance = [0, "x"]'))
    result = invoke(runner, "compare", config, "--out", tmp_path / "report")
    assert result.exit_code == 1 and "model 'cond': --guidance must be a number" in result.output


def test_a_conditional_cold_run_draws_x_T_from_its_class_prior(tmp_path):
    """Blur keeps a digit's coarse shape at T, so the label can only steer what x_T already decides if x_T comes
    from the class's own mixture: ones (thin strokes) have far less ink in x_T than zeros."""
    from diffkit.data import load_images, load_labels, to_model_range
    from diffkit_cold.degradations import Blur, BlurOptions

    images, labels = to_model_range(load_images("mnist", "train")[:3000]), load_labels("mnist", "train")[:3000]
    d = Blur(BlurOptions())
    d.fit_prior(images, torch.Generator().manual_seed(0), labels=labels)
    assert set(d.class_priors) == set(range(10))
    asked = torch.tensor([0] * 200 + [1] * 200 + [10] * 200)  # the null label draws from the mixture of all
    x_T = d.sample_prior(600, (1, 28, 28), torch.Generator().manual_seed(1), labels=asked)
    ink = (x_T + 1).mean(dim=(1, 2, 3))
    zeros, ones, any_class = ink[:200].mean(), ink[200:400].mean(), ink[400:].mean()
    real = {c: (d._at_T(images[labels == c][:200]) + 1).mean() for c in (0, 1)}
    assert ones < any_class < zeros
    assert zeros == pytest.approx(float(real[0]), rel=0.15) and ones == pytest.approx(float(real[1]), rel=0.15)
    fresh = Blur(BlurOptions())
    fresh.load_prior_state(d.prior_state())  # the class mixtures survive a checkpoint
    again = fresh.sample_prior(600, (1, 28, 28), torch.Generator().manual_seed(1), labels=asked)
    assert torch.equal(again, x_T)
