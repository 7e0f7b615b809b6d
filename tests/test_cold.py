import math

import pytest
import torch
import torch.nn.functional as F

from diffkit.data import load_images, to_model_range
from diffkit.denoiser import Denoiser
from diffkit.errors import DiffkitError
from diffkit.options import parse_options
from diffkit.plugins import components
from diffkit_cold.samplers import ColdSampler, DirectSampler, HeunColdSampler, NaiveColdSampler
from diffkit_gaussian.diffusion import GaussianDiffusion, GaussianOptions
from diffkit_gaussian.samplers import DDIMSampler

COLD = ["blur", "mask", "pixelate", "fade", "heat"]


def make(name, **options):
    cls = components("degradations")[name].cls
    return cls(parse_options(cls.Options, options))


@pytest.fixture(scope="module")
def digits():
    return to_model_range(load_images("mnist", "test")[:64])


def steps(d, n):
    return torch.full((n,), 0, dtype=torch.long), torch.full((n,), d.T, dtype=torch.long)


@pytest.mark.parametrize("name", COLD)
@pytest.mark.parametrize("channels", [1, 3])
def test_shape_identity_and_determinism(name, channels, digits):
    d = make(name)
    x0 = digits[:8].repeat(1, channels, 1, 1)
    zero, _ = steps(d, 8)
    t = torch.randint(0, d.T + 1, (8,), generator=torch.Generator().manual_seed(0))
    assert d.degrade(x0, t).shape == x0.shape
    assert torch.equal(d.degrade(x0, zero), x0)
    g = lambda: torch.Generator().manual_seed(5)
    assert torch.equal(d.degrade(x0, t, g()), d.degrade(x0, t, g()))


@pytest.mark.parametrize("name", COLD)
def test_information_is_lost_monotonically(name, digits):
    d = make(name)
    n = len(digits)
    # the same noise draw at every t (a fresh global draw each time made this depend on the tests run before it)
    distance = [(d.degrade(digits, torch.full((n,), t), torch.Generator().manual_seed(0)) - digits).pow(2).mean().item()
                for t in range(d.T + 1)]
    assert distance[0] == 0
    assert all(b >= a - 1e-6 for a, b in zip(distance, distance[1:])), distance
    assert distance[-1] > 0.1


def test_blur_at_T_is_close_to_the_image_mean(digits):
    d = make("blur", sigma=7.0)  # the paper's setting
    x_T = d.degrade(digits, steps(d, len(digits))[1])
    assert x_T.std(dim=(2, 3)).max() < 0.1 * digits.std(dim=(2, 3)).min()
    assert torch.allclose(x_T.mean(dim=(2, 3)), digits.mean(dim=(2, 3)), atol=1e-5)  # circular blur keeps the mean


def test_pixelate_follows_the_factor_schedule(digits):
    d = make("pixelate", T=5)  # the paper's setting
    assert [d.size_at(t, 28) for t in range(6)] == [28, 14, 7, 4, 2, 1]
    x = d.degrade(digits[:2], torch.tensor([2, 5]))
    assert x[0, 0].unique().numel() <= 49 and x[1, 0].unique().numel() == 1


@pytest.mark.parametrize("name,options", [("blur", {}), ("mask", {}), ("mask", {"centre": "random"}),
                                          ("pixelate", {}), ("fade", {}), ("blur", {"schedule": "exponential"}),
                                          ("heat", {"noise": 0.0})])
def test_algorithm_2_with_a_perfect_restoration_returns_x0(name, options, digits):
    d = make(name, **options)
    x0 = digits[:16]
    params = d.draw_params(16, torch.Generator().manual_seed(0))
    x_T = d.degrade(x0, steps(d, 16)[1], params=params)
    for sampler in (ColdSampler(), NaiveColdSampler(), HeunColdSampler()):
        assert torch.allclose(sampler.sample(Denoiser(lambda x, t: x0, d), x_T, d.T, params=params), x0, atol=1e-5)


def test_cold_sampler_on_gaussian_diffusion_is_ddim():
    d = GaussianDiffusion(GaussianOptions(T=100, prediction="x0"))
    net = lambda x, t: torch.tanh(x * 0.5 + t.float().view(-1, 1, 1, 1) / 100)
    x_T = torch.randn(4, 1, 6, 6, generator=torch.Generator().manual_seed(0))
    cold = ColdSampler().sample(Denoiser(net, d), x_T, 10)
    assert torch.allclose(cold, DDIMSampler().sample(Denoiser(net, d), x_T, 10), atol=1e-5)
    assert DirectSampler().sample(Denoiser(net, d), x_T, 10).shape == x_T.shape


def test_cold_heun_converges_faster_than_algorithm_2_on_the_probability_flow_ode():
    """On a Gaussian diffusion of N(μ, s²) data the exact x0 estimate and the ODE's exact solution are known
    (tests/test_solvers.py); Algorithm 2 (DDIM there) halves its error when the steps double, Heun's trapezoid
    cuts it by more than 2.5 (its last jump into t = 0 is an Euler step) and ends well below."""
    from test_solvers import exact_solution, ideal

    d = GaussianDiffusion(GaussianOptions(T=1000, schedule="linear", prediction="x0"))
    x_T = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    exact = exact_solution(d, x_T)
    cold, heun = ([(cls().sample(Denoiser(ideal(d), d), x_T, n) - exact).abs().max().item() for n in (20, 40, 80)]
                  for cls in (ColdSampler, HeunColdSampler))
    assert all(1.7 < cold[i] / cold[i + 1] < 2.3 for i in range(2)), cold
    assert all(heun[i] / heun[i + 1] > 2.5 for i in range(2)), heun
    assert heun[-1] < cold[-1] / 3
    assert HeunColdSampler().nfe(d, 20) == 39


def test_noise_grows_to_its_level_at_T(digits):
    d = make("blur", noise=0.2)
    n = len(digits)
    g = torch.Generator().manual_seed(0)
    residual = d.degrade(digits, steps(d, n)[1], g) - d.degrade_mean(digits, steps(d, n)[1])
    assert residual.std().item() == pytest.approx(0.2, rel=0.05)
    assert torch.equal(d.degrade(digits, steps(d, n)[0], g), digits)


@pytest.mark.parametrize("name,options", [("blur", {}), ("blur", {"sigma": 7.0, "prior_resolution": 4}),
                                          ("blur", {"sigma": 0.8, "prior_resolution": 7}),
                                          ("blur", {"sigma": 0.8, "prior_resolution": 7, "prior_features": "pca"}),
                                          ("mask", {}),
                                          ("pixelate", {}), ("pixelate", {"T": 3, "prior_resolution": 4}),
                                          ("fade", {}), ("fade", {"noise": 0.5}), ("heat", {})])
def test_prior_matches_degraded_training_images(name, options):
    d = make(name, **options)
    train = to_model_range(load_images("mnist", "train")[:2000])
    d.fit_prior(train, torch.Generator().manual_seed(0))
    draws = d.sample_prior(2000, (1, 28, 28), torch.Generator().manual_seed(1))
    assert draws.shape == (2000, 1, 28, 28)
    x_T = d.degrade(train, torch.full((len(train),), d.T))
    real, fake = x_T.mean(dim=(1, 2, 3)), draws.mean(dim=(1, 2, 3))
    assert fake.mean().item() == pytest.approx(real.mean().item(), abs=0.02)
    assert fake.std().item() == pytest.approx(real.std().item(), rel=0.25, abs=0.01)
    # Within an image: D's own noise at T, plus the symmetry-breaking prior noise on top.
    real_spread = (x_T - real.view(-1, 1, 1, 1)).pow(2).mean().sqrt().item()
    fake_spread = (draws - fake.view(-1, 1, 1, 1)).pow(2).mean().sqrt().item()
    assert fake_spread == pytest.approx((real_spread**2 + d.options.prior_noise**2) ** 0.5, rel=0.25, abs=0.01)
    restored = type(d)(d.options)
    restored.load_prior_state(d.prior_state())
    assert torch.equal(restored.sample_prior(3, (1, 28, 28), torch.Generator().manual_seed(2)),
                       d.sample_prior(3, (1, 28, 28), torch.Generator().manual_seed(2)))


def test_a_pca_prior_of_a_pixelation_draws_block_images():
    """4×4 pixelations span a 16-dimensional space; its top 16 principal components span the same one."""
    d = make("pixelate", T=3, prior_resolution=4, prior_features="pca", prior_noise=0.0)
    d.fit_prior(to_model_range(load_images("mnist", "train")[:1000]), torch.Generator().manual_seed(0))
    draws = d.sample_prior(64, (1, 28, 28), torch.Generator().manual_seed(1))
    blocks = F.interpolate(F.adaptive_avg_pool2d(draws, 4), size=28, mode="nearest")
    assert torch.allclose(draws, blocks, atol=1e-4)
    assert draws.std(dim=0).mean() > 0.1  # and they differ from one another


def test_heat_keeps_the_mean_and_blurs_a_pixel_into_a_gaussian(digits):
    d = make("heat", sigma_min=2.0, sigma_max=2.0, T=3)
    pixel = torch.zeros(1, 1, 64, 64)
    pixel[0, 0, 32, 32] = 1  # far from the borders, the heat kernel is a Gaussian of std sigma
    offsets = torch.arange(64.0) - 32
    gaussian = torch.exp(-(offsets[:, None] ** 2 + offsets[None] ** 2) / (2 * 2.0**2))
    assert torch.allclose(d.degrade_mean(pixel, torch.tensor([1]))[0, 0], gaussian / gaussian.sum(), atol=1e-6)
    d = make("heat")
    t = torch.arange(len(digits)) % (d.T + 1)
    assert torch.allclose(d.degrade_mean(digits, t).mean(dim=(2, 3)), digits.mean(dim=(2, 3)), atol=1e-5)
    assert torch.equal(d.degrade_mean(digits, torch.zeros(len(digits), dtype=torch.long)), digits)
    sigmas = d.sigmas()
    assert sigmas[0] == 0 and sigmas[1] == pytest.approx(0.5) and sigmas[-1] == pytest.approx(20.0)
    assert sigmas[2] / sigmas[1] == pytest.approx(sigmas[-1] / sigmas[-2])  # geometric


@pytest.mark.parametrize("sampler_cls", [ColdSampler, NaiveColdSampler, HeunColdSampler])
def test_delta_adds_fresh_noise_between_steps_only(sampler_cls, digits):
    from diffkit_cold.samplers import StochasticOptions

    d, x0 = make("blur", T=4), digits[:64]
    x_T = d.degrade(x0, torch.full((64,), 4))
    perfect = lambda x, t: x0  # noqa: E731
    plain = sampler_cls().sample(Denoiser(perfect, d), x_T, 4, trajectory=64)[1]
    g = lambda seed: torch.Generator().manual_seed(seed)  # noqa: E731
    out, path = sampler_cls(StochasticOptions(delta=0.05)).sample(Denoiser(perfect, d), x_T, 4, g(0), trajectory=64)
    again = sampler_cls(StochasticOptions(delta=0.05)).sample(Denoiser(perfect, d), x_T, 4, g(0))
    other = sampler_cls(StochasticOptions(delta=0.05)).sample(Denoiser(perfect, d), x_T, 4, g(1), trajectory=64)[1]
    assert torch.equal(out, again) and not torch.equal(path[1], other[1])  # the generator decides the noise
    assert (path[1] - plain[1]).std().item() == pytest.approx(0.05, rel=0.05)
    assert torch.allclose(out, x0, atol=1e-5) if sampler_cls is NaiveColdSampler else out.shape == x0.shape


def test_the_loss_option_is_the_mean_absolute_or_squared_error_of_x0():
    x0 = torch.tensor([0.5, -1.0, 0.0, 1.0]).view(1, 1, 2, 2).repeat(2, 1, 1, 1)
    t, noise = torch.tensor([1, 2]), torch.zeros(2, 1, 2, 2)
    zero = lambda x, t: torch.zeros_like(x)  # x̂0 = 0: the error is x0 itself
    assert torch.allclose(make("fade", loss="l1").training_losses(zero, x0, t, noise), torch.full((2,), 2.5 / 4))
    assert torch.allclose(make("fade", loss="l2").training_losses(zero, x0, t, noise), torch.full((2,), 2.25 / 4))


def test_a_soft_hole_removes_strength_times_the_gaussian_per_step():
    """2×2 image, T = 1: every pixel centre is at d² = 0.5 from the image centre and r_1 = 2."""
    for strength in (1.0, 0.5):
        mask = make("mask", T=1, strength=strength).mask(torch.tensor([1]), (1, 1, 2, 2), None)
        assert torch.allclose(mask, torch.full((1, 1, 2, 2), 1 - strength * math.exp(-0.5 / 8)))
    with pytest.raises(DiffkitError, match="strength in"):
        make("mask", strength=0.0)


def test_the_mask_at_t_is_the_product_of_the_first_t_holes_for_each_image():
    """2×2 image, T = 3, centred hole: r_i = 2i/3, so mask_t = Π_{i≤t} (1 − s·exp(−0.5 / (2 r_i²))); random
    centres give each image of a batch the mask it gets alone."""
    d = make("mask", T=3, strength=0.5)
    factor = [1 - 0.5 * math.exp(-0.5 / (2 * (2 * i / 3) ** 2)) for i in (1, 2, 3)]
    masks = d.mask(torch.tensor([0, 2, 3, 1]), (4, 1, 2, 2), None)[:, 0, 0, 0]
    assert torch.allclose(masks, torch.tensor([1, factor[0] * factor[1], math.prod(factor), factor[0]]))
    d = make("mask", T=5, centre="random")
    t, centres = torch.tensor([5, 2, 0, 4]), d.draw_params(4, torch.Generator().manual_seed(0))
    batch = d.mask(t, (4, 1, 8, 8), centres)
    alone = torch.cat([d.mask(t[i:i + 1], (1, 1, 8, 8), centres[i:i + 1]) for i in range(4)])
    assert torch.equal(batch, alone) and torch.equal(batch[2], torch.ones(1, 8, 8))


def test_an_option_whose_default_a_subclass_changes_keeps_its_help():
    from diffkit.options import describe

    rows = {name: (default, help) for name, _, default, help in describe(components("degradations")["blur"].cls.Options)}
    assert rows["T"] == (20, "degradation steps") and rows["prior_noise"] == (0.0, "std of extra noise on prior draws")
