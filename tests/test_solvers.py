"""The ODE solvers (euler, heun, dpm++2m) and flow matching, against closed-form answers.

For Gaussian data x0 ~ N(μ, s²) the ideal x0 estimate is E[x0 | x_t] = μ + a·s²/(a²s² + b²)·(x_t − a·μ), and
the probability-flow ODE keeps (x/a − μ)/sqrt(s² + (b/a)²) constant, so x_T's exact image at t = 0 is known."""

import math

import pytest
import torch

from diffkit.denoiser import Denoiser
from diffkit_flow.flow import FlowMatching, FlowOptions
from diffkit_gaussian.diffusion import GaussianDiffusion, GaussianOptions
from diffkit_gaussian.samplers import DDIMSampler
from diffkit_gaussian.solvers import DPMSolverPP2M, EulerSampler, HeunSampler, SolverOptions, spaced_timesteps

MU, S = 0.2, 0.2
SOLVERS = [EulerSampler, HeunSampler, DPMSolverPP2M]


def ideal(d):
    """The exact x0-prediction network for N(MU, S²) data."""
    def network(x, t):
        a, b = d.signal_std(t).view(-1, 1, 1, 1).float(), d.noise_std(t).view(-1, 1, 1, 1).float()
        return MU + a * S**2 / (a**2 * S**2 + b**2) * (x - a * MU)
    return network


def exact_solution(d, x_T):
    T = torch.tensor([d.T])
    a, b = float(d.signal_std(T)), float(d.noise_std(T))
    return MU + S * (x_T / a - MU) / math.sqrt(S**2 + (b / a) ** 2)


def errors(cls, spacing, counts=(20, 40, 80)):
    d = GaussianDiffusion(GaussianOptions(T=1000, schedule="linear", prediction="x0"))
    x_T = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    exact = exact_solution(d, x_T)
    return [(cls(SolverOptions(spacing)).sample(Denoiser(ideal(d), d), x_T, n) - exact).abs().max().item() for n in counts]


def test_euler_converges_with_order_one():
    e = errors(EulerSampler, "time")
    assert all(1.7 < e[i] / e[i + 1] < 2.3 for i in range(2)), e


@pytest.mark.parametrize("cls", [HeunSampler, DPMSolverPP2M])
def test_second_order_solvers_converge_at_least_three_times_faster_when_halving_the_step(cls):
    e = errors(cls, "logsnr")
    assert all(e[i] / e[i + 1] > 3 for i in range(2)), e
    assert e[-1] < errors(EulerSampler, "logsnr")[-1] / 10


@pytest.mark.parametrize("cls", SOLVERS)
@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
@pytest.mark.parametrize("spacing", ["time", "logsnr", "karras"])
def test_a_perfect_predictor_returns_the_data_point(cls, prediction, spacing):
    d = GaussianDiffusion(GaussianOptions(T=100, schedule="cosine", prediction=prediction))
    x0 = torch.rand(2, 1, 4, 4, generator=torch.Generator().manual_seed(1)) * 1.6 - 0.8

    def network(x, t):  # what a perfect network of this prediction target outputs
        a, b = d.signal_std(t).view(-1, 1, 1, 1).float(), d.noise_std(t).view(-1, 1, 1, 1).float()
        eps = (x - a * x0) / b
        return {"x0": x0, "eps": eps, "v": a * eps - b * x0}[prediction]

    out = cls(SolverOptions(spacing)).sample(Denoiser(network, d), torch.randn(2, 1, 4, 4), 7)
    assert torch.allclose(out, x0, atol=1e-4)


def test_euler_is_ddim():
    d = GaussianDiffusion(GaussianOptions(T=100, prediction="eps"))
    net = lambda x, t: torch.tanh(x * 0.3 + t.float().view(-1, 1, 1, 1) / 100)  # noqa: E731
    x_T = torch.randn(3, 1, 6, 6, generator=torch.Generator().manual_seed(2))
    assert torch.allclose(EulerSampler().sample(Denoiser(net, d), x_T, 10), DDIMSampler().sample(Denoiser(net, d), x_T, 10), atol=1e-5)


@pytest.mark.parametrize("spacing", ["time", "logsnr", "karras"])
def test_spacings_run_from_T_to_zero_and_count_their_evaluations(spacing):
    d = GaussianDiffusion(GaussianOptions(T=1000, schedule="cosine"))
    grid = spaced_timesteps(d, 20, spacing)
    assert grid[0] == 1000 and grid[-1] == 0 and all(a > b for a, b in zip(grid, grid[1:]))
    assert 15 <= len(grid) - 1 <= 20
    steps = len(grid) - 1
    assert HeunSampler(SolverOptions(spacing)).nfe(d, 20) == 2 * steps - 2  # Euler out of T and into 0
    assert DPMSolverPP2M(SolverOptions(spacing)).nfe(d, 20) == steps
    if spacing == "logsnr":  # evenly spaced in log(a/b), up to the rounding to integer t
        t = torch.tensor(grid[1:-1])
        lam = (d.signal_std(t) / d.noise_std(t)).log()
        gaps = lam[1:] - lam[:-1]
        assert gaps.std() / gaps.mean() < 0.2


def flow(**options):
    return FlowMatching(FlowOptions(**options))


def test_flow_interpolates_from_data_to_noise_and_its_targets_recover_x0():
    d = flow()
    x0, noise = torch.rand(4, 1, 5, 5) * 2 - 1, torch.randn(4, 1, 5, 5)
    t = torch.tensor([0, 250, 500, 1000])
    x_t = d.degrade(x0, t, noise=noise)
    tau = (t / 1000).view(-1, 1, 1, 1)
    assert torch.allclose(x_t, (1 - tau) * x0 + tau * noise)
    assert torch.allclose(d.predict_x0(lambda x, tt: noise - x0, x_t, t), x0, atol=1e-5)
    assert torch.allclose(flow(prediction="x0").predict_x0(lambda x, tt: x0, x_t, t), x0)
    assert d.training_losses(lambda x, tt: noise - x0, x0, t, noise).abs().max() < 1e-10


def test_flow_timesteps_are_logit_normal_or_uniform():
    g = torch.Generator().manual_seed(0)
    t = flow().sample_timesteps(20000, g)
    assert t.min() >= 1 and t.max() <= 1000
    assert abs(t.float().mean().item() - 500) < 10 and t.float().std().item() < 250  # bunched in the middle
    u = flow(timesteps="uniform").sample_timesteps(20000, g).float()
    assert abs(u.std().item() - 1000 / math.sqrt(12)) < 10


@pytest.mark.parametrize("cls", SOLVERS)
def test_solvers_sample_flow_exactly_with_a_perfect_predictor_and_converge_on_gaussian_data(cls):
    d = flow(prediction="x0")
    x0 = torch.rand(2, 1, 4, 4) * 1.6 - 0.8
    out = cls().sample(Denoiser(lambda x, t: x0, d), torch.randn(2, 1, 4, 4), 8)
    assert torch.allclose(out, x0, atol=1e-5)
    x_T = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    # at t = T, a = 0: the exact image is the quantile map μ + s·x_T
    errs = [(cls().sample(Denoiser(ideal(d), d), x_T, n) - (MU + S * x_T)).abs().max().item() for n in (10, 40)]
    assert errs[1] < errs[0] / 3, errs


def test_heun_steps_out_of_t_equals_T_with_euler_on_the_cosine_schedule():
    """On the cosine schedule σ_T = b/a is about 2·10⁴: a Heun step that averages the slopes at T and at its
    target magnifies any error. Out of T, Heun takes an Euler step (as flow's σ_T = ∞ always did): with 10
    time-spaced steps the exact solution of Gaussian data is met within 0.05 mean |Δ| (0.15 before)."""
    d = GaussianDiffusion(GaussianOptions(T=1000, schedule="cosine", prediction="x0"))
    x_T = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    out = HeunSampler(SolverOptions("time")).sample(Denoiser(ideal(d), d), x_T, 10)
    assert (out - exact_solution(d, x_T)).abs().mean() < 0.05
    assert HeunSampler(SolverOptions("time")).nfe(d, 10) == 18
