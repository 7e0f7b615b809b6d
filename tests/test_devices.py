"""Every component runs on whatever device its inputs are on.

CI has no GPU, so the CPU tests make the default device `meta`: a tensor that a component creates
without taking a device from its input lands on `meta`, and mixing it with the CPU inputs fails (or a
`meta` output shows it). The `gpu` tests run the same contracts on CUDA where there is one."""

import sys

import pytest
import torch

from diffkit import draws
from diffkit.denoiser import Denoiser
from diffkit.options import parse_options
from diffkit.plugins import components
from diffkit.sampler import timestep_pairs

from conftest import ROOT

sys.path.insert(0, str(ROOT / "plugins" / "example-rowcol"))
from diffkit_rowcol import RowColAverage  # noqa: E402

DEGRADATIONS = [("gaussian", {"T": 20}), ("gaussian", {"T": 20, "prediction": "v", "schedule": "cosine"}),
                ("blur", {"noise": 0.1}), ("mask", {"centre": "random"}), ("mask", {}), ("pixelate", {}),
                ("fade", {"noise": 0.2}), ("heat", {"T": 10}), ("flow", {"T": 20}), ("rowcol", {})]
TINY_NETWORKS = {"cnn": {"hidden": (4, 4), "time_features": 8}, "unet": {"base_channels": 8, "channel_mults": (1, 2)}}
gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def make(kind, name, options):
    cls = RowColAverage if name == "rowcol" else components(kind)[name].cls
    return cls(parse_options(cls.Options, options))


def tiny_network(name, device):
    cls = components("networks")[name].cls
    torch.manual_seed(0)
    return cls(parse_options(cls.Options, TINY_NETWORKS[name]), 1, 28).to(device).eval()


def exercise(d, network, device, generator):
    """Every contract method a run calls, with inputs on `device`; returns the outputs."""
    images = torch.rand(64, 1, 28, 28, generator=torch.Generator().manual_seed(0), device="cpu") * 2 - 1
    d.fit_prior(images, generator)
    x0 = images[:6].to(device)
    t = d.sample_timesteps(6, generator).to(device)
    params = draws.to_device(d.draw_params(6, generator), device)
    noise = draws.randn(x0.shape, generator, device)
    outputs = {"degrade": d.degrade(x0, t, generator, params=params),
               "noise_std": d.noise_std(t), "noise_estimate": d.noise_estimate(x0, x0, t, params),
               "losses": d.training_losses(network, x0, t, noise, params),
               "prior": d.sample_prior(6, (1, 28, 28), generator).to(device)}
    for name, component in components("samplers").items():
        sampler = component.cls()
        if sampler.supports(d):
            steps = min(3, d.T)
            outputs[name] = sampler.sample(Denoiser(network, d), outputs["prior"], steps, generator, params=params)
    return outputs


@pytest.mark.parametrize("name,options", DEGRADATIONS)
@pytest.mark.parametrize("network_name", sorted(TINY_NETWORKS))
def test_no_component_creates_a_tensor_off_its_inputs_device(name, options, network_name):
    network = tiny_network(network_name, "cpu")
    generator = torch.Generator().manual_seed(1)
    with torch.device("meta"):  # the default device: what a tensor made without a device lands on
        d = make("degradations", name, options)
        outputs = exercise(d, network, "cpu", generator)
        assert network(torch.zeros(2, 1, 28, 28, device="cpu"), torch.ones(2, dtype=torch.long, device="cpu")).device.type == "cpu"
    assert len(outputs) >= 6  # the degradation's methods and at least one sampler ran
    for key, value in outputs.items():
        assert value.device.type == "cpu", key
        assert torch.isfinite(value).all(), key


def test_timestep_pairs_and_draws_ignore_the_default_device():
    with torch.device("meta"):
        assert timestep_pairs(10, 2) == [(10, 5), (5, 0)]
        g = torch.Generator().manual_seed(0)
        assert draws.randn((3,), g, "cpu").device.type == "cpu"


def test_draws_are_made_on_the_generator_and_moved():
    a = draws.randn((4,), draws.seeded(3, 7), "cpu")
    b = draws.randn((4,), draws.seeded(3, 7), "meta")
    assert b.device.type == "meta" and b.shape == a.shape
    assert torch.equal(a, torch.randn(4, generator=torch.Generator().manual_seed(3 * 1_000_003 + 7)))
    batch = {"centre": torch.arange(10).view(5, 2)}
    assert torch.equal(draws.take(batch, slice(1, 3))["centre"], torch.tensor([[2, 3], [4, 5]]))
    assert draws.take(None, slice(0, 1)) is None


@gpu
@pytest.mark.gpu
@pytest.mark.parametrize("name,options", DEGRADATIONS)
def test_every_contract_runs_on_cuda_and_matches_the_cpu(name, options):
    results = {}
    for device in ("cpu", "cuda"):
        network = tiny_network("cnn", device)
        results[device] = exercise(make("degradations", name, options), network, device, torch.Generator().manual_seed(1))
    for key, value in results["cuda"].items():
        assert value.device.type == "cuda", key
        assert torch.allclose(value.cpu(), results["cpu"][key], atol=1e-3), key
