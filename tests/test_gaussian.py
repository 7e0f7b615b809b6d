import math

import numpy as np
import pytest
import torch

from diffkit.denoiser import Denoiser
from diffkit_gaussian.diffusion import GaussianDiffusion, GaussianOptions
from diffkit_gaussian.samplers import DDIMOptions, DDIMSampler, DDPMSampler
from diffkit_networks.cnn import CNN, CNNOptions


def test_linear_schedule_matches_hand_computed_values():
    d = GaussianDiffusion(GaussianOptions(T=1000))
    beta2 = 1e-4 + (0.02 - 1e-4) / 999
    assert d.betas[0] == 0 and d.alphas_cumprod[0] == 1  # t = 0 is the clean image
    assert d.betas[1].item() == pytest.approx(1e-4)
    assert d.betas[2].item() == pytest.approx(beta2)
    assert d.betas[1000].item() == pytest.approx(0.02)
    assert d.alphas_cumprod[2].item() == pytest.approx((1 - 1e-4) * (1 - beta2))
    # ᾱ_T of the coursework schedule is about 4.0e-5: images are essentially pure noise at T
    assert d.alphas_cumprod[1000].item() == pytest.approx(4.036e-5, rel=1e-3)


def test_linear_schedule_scales_with_T_like_improved_diffusion():
    d = GaussianDiffusion(GaussianOptions(T=100))
    assert d.betas[1].item() == pytest.approx(1e-3)
    assert d.betas[100].item() == pytest.approx(0.2)


def test_cosine_schedule_follows_its_closed_form():
    d = GaussianDiffusion(GaussianOptions(schedule="cosine", T=1000))
    f = lambda t: math.cos((t / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2
    for t in (1, 250, 500, 900):
        assert d.alphas_cumprod[t].item() == pytest.approx(f(t) / f(0), rel=1e-6)


def test_posterior_matches_improved_diffusion_coefficients():
    """Coefficients as openai/improved-diffusion computes them, with its 0-based arrays."""
    d = GaussianDiffusion(GaussianOptions(T=1000))
    betas = np.linspace(1e-4, 0.02, 1000)
    ac = np.cumprod(1 - betas)
    ac_prev = np.append(1.0, ac[:-1])
    variance = betas * (1 - ac_prev) / (1 - ac)
    coef1 = betas * np.sqrt(ac_prev) / (1 - ac)
    coef2 = (1 - ac_prev) * np.sqrt(1 - betas) / (1 - ac)
    x0, xt = torch.ones(1, 1, 1, 1), torch.zeros(1, 1, 1, 1)
    for t in (2, 10, 500, 1000):
        tt = torch.tensor([t])
        mean0, var = d.q_posterior_mean_variance(x0, xt, tt, tt - 1)
        mean1, _ = d.q_posterior_mean_variance(xt, x0, tt, tt - 1)
        assert var.item() == pytest.approx(variance[t - 1], rel=1e-5)
        assert mean0.item() == pytest.approx(coef1[t - 1], rel=1e-5)
        assert mean1.item() == pytest.approx(coef2[t - 1], rel=1e-5)


def test_q_sample_statistics():
    d = GaussianDiffusion(GaussianOptions(T=1000))
    x0 = torch.full((20000, 1, 4, 4), 0.5)
    t = torch.full((20000,), 300)
    x = d.degrade(x0, t, torch.Generator().manual_seed(0))
    a = d.alphas_cumprod[300].item()
    assert x.mean().item() == pytest.approx(math.sqrt(a) * 0.5, abs=0.01)
    assert x.std().item() == pytest.approx(math.sqrt(1 - a), abs=0.01)
    assert torch.equal(d.degrade(x0[:3], torch.zeros(3, dtype=torch.long)), x0[:3])  # t = 0: identity


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_every_prediction_target_recovers_x0_from_its_ideal_output(prediction):
    d = GaussianDiffusion(GaussianOptions(T=100, prediction=prediction))
    g = torch.Generator().manual_seed(1)
    x0, noise = torch.rand(4, 1, 8, 8, generator=g) * 2 - 1, torch.randn(4, 1, 8, 8, generator=g)
    t = torch.tensor([1, 30, 60, 100])
    x_t = d.q_sample(x0, t, noise)
    ideal = {"eps": noise, "x0": x0, "v": d.velocity(x0, noise, t)}[prediction]
    assert torch.allclose(d.predict_x0(lambda x, tt: ideal, x_t, t), x0, atol=1e-3)


def test_ddim_with_eta_zero_is_deterministic_for_a_seed_and_ddpm_is_stochastic():
    torch.manual_seed(0)
    d = GaussianDiffusion(GaussianOptions(T=50))
    net = CNN(CNNOptions(hidden=(4,), time_features=8), 1, 8).eval()
    x_T = d.sample_prior(3, (1, 8, 8), torch.Generator().manual_seed(0))
    ddim = DDIMSampler(DDIMOptions(eta=0.0))
    a = ddim.sample(Denoiser(net, d), x_T, 10, torch.Generator().manual_seed(1))
    b = ddim.sample(Denoiser(net, d), x_T, 10, torch.Generator().manual_seed(2))
    assert torch.equal(a, b)
    ddpm = DDPMSampler()
    c = ddpm.sample(Denoiser(net, d), x_T, 50, torch.Generator().manual_seed(1))
    e = ddpm.sample(Denoiser(net, d), x_T, 50, torch.Generator().manual_seed(2))
    assert not torch.equal(c, e)
    assert torch.equal(c, ddpm.sample(Denoiser(net, d), x_T, 50, torch.Generator().manual_seed(1)))


def test_ddim_with_a_perfect_network_returns_the_data_point():
    """If the network predicts x0 exactly, DDIM (eta = 0) lands on x0 from any x_T in any step count."""
    d = GaussianDiffusion(GaussianOptions(T=100, prediction="x0"))
    x0 = torch.rand(2, 1, 4, 4) * 2 - 1
    out, path = DDIMSampler().sample(Denoiser(lambda x, t: x0, d), torch.randn(2, 1, 4, 4), 7, trajectory=1)
    assert torch.allclose(out, x0, atol=1e-5)
    assert len(path) == 8 and path[0].shape == (1, 1, 4, 4)  # the path of the first image


def test_min_snr_gamma_weights_follow_hang_et_al():
    t = torch.tensor([1, 300, 700, 1000])
    plain = GaussianDiffusion(GaussianOptions(T=1000, prediction="v"))
    assert torch.equal(plain.loss_weight(t), torch.ones(4))
    for prediction in ("eps", "x0", "v"):
        d = GaussianDiffusion(GaussianOptions(T=1000, prediction=prediction, min_snr_gamma=5.0))
        a = d.alphas_cumprod[t]
        snr = a / (1 - a)
        expected = {"eps": snr.clamp(max=5) / snr, "x0": snr.clamp(max=5), "v": snr.clamp(max=5) / (snr + 1)}[prediction]
        assert torch.allclose(d.loss_weight(t).double(), expected, rtol=1e-6)
    eps = GaussianDiffusion(GaussianOptions(T=1000, min_snr_gamma=5.0)).loss_weight(t)
    assert eps[0] < 0.01 and eps[-1] == pytest.approx(1.0)  # low-noise steps count less, high-noise ones fully
