"""diffkit.testing: the built-in components and the example plugin pass the contract kit, and a broken
component fails it with a message naming the plugin, the class, the method and what was expected."""

import sys

import pytest
import torch
import torch.nn.functional as F

from diffkit import hookimpl
from diffkit.plugins import components
from diffkit.sampler import Sampler
from diffkit.testing import ContractError, check_degradation, check_network, check_sampler
from diffkit_cold.cold import ColdDegradation
from diffkit_networks.cnn import CNN

from conftest import ROOT

sys.path.insert(0, str(ROOT / "plugins" / "example-rowcol"))
from diffkit_rowcol import RowColAverage, TwoStepCold  # noqa: E402

GAUSSIAN_FAMILY = {"ddpm", "ddim", "euler", "heun", "dpm++2m"}


@pytest.mark.parametrize("name", sorted(components("degradations")))
def test_every_built_in_degradation_passes(name):
    check_degradation(components("degradations")[name].cls, {"T": 10} if name in ("gaussian", "flow") else None)


@pytest.mark.parametrize("name, options", [("cnn", {"hidden": [4], "time_features": 8}),
                                           ("unet", {"base_channels": 8, "channel_mults": [1, 2]})])
def test_every_built_in_network_passes(name, options):
    check_network(components("networks")[name].cls, options)


@pytest.mark.parametrize("name", sorted(components("samplers")))
def test_every_built_in_sampler_passes(name):
    check_sampler(components("samplers")[name].cls, degradation="gaussian" if name in GAUSSIAN_FAMILY else "blur")


def test_the_example_plugin_passes():
    check_degradation(RowColAverage)
    check_sampler(TwoStepCold)


class Shrinks(ColdDegradation):
    """Returns 14×14 images: the mistake an outside plugin author made."""

    def degrade_mean(self, x0, t, params=None):
        return F.avg_pool2d(x0, 2)


class Numpy(ColdDegradation):
    def degrade_mean(self, x0, t, params=None):
        return x0.numpy()


class Shifts(ColdDegradation):
    def degrade_mean(self, x0, t, params=None):
        return x0 + 0.5  # not the identity at t = 0


class Plugin:
    @hookimpl
    def register_degradations(self, register):
        register(Shrinks, name="shrinks")


def test_a_degradation_returning_14x14_fails_naming_the_plugin_the_class_and_the_method(register_plugin):
    register_plugin(Plugin(), "shrinking-plugin")
    with pytest.raises(ContractError, match=r"plugin 'shrinking-plugin': "
                                            r"Shrinks.degrade_mean: expected shape \(4, 1, 28, 28\), got \(4, 1, 14, 14\)"):
        check_degradation(Shrinks)
    with pytest.raises(ContractError, match=r"unregistered: Numpy.degrade_mean: expected a torch.Tensor, got ndarray"):
        check_degradation(Numpy)
    with pytest.raises(ContractError, match=r"Shifts.degrade_mean: expected the identity at t = 0, got a change of 0.5"):
        check_degradation(Shifts)


class WrongShape(CNN):
    def forward(self, x_t, t, labels=None):
        return super().forward(x_t, t, labels)[:, :, :-1]


class DeafToLabels(CNN):
    def forward(self, x_t, t, labels=None):
        return super().forward(x_t, t)  # drops the labels


class MiscountedSampler(Sampler):
    def nfe(self, degradation, steps):
        return steps  # but every step calls the denoiser twice

    def step(self, denoiser, x, t, s, state, generator=None, params=None):
        denoiser(x, t)
        d = denoiser.degradation
        return d.degrade(denoiser(x, t), torch.full((len(x),), s, dtype=torch.long, device=x.device))


def test_broken_networks_and_samplers_are_named():
    with pytest.raises(ContractError, match=r"WrongShape.forward: expected shape \(3, 1, 28, 28\), got \(3, 1, 27, 28\)"):
        check_network(WrongShape, {"hidden": [4], "time_features": 8})
    with pytest.raises(ContractError, match=r"DeafToLabels.forward: expected an output that depends on labels"):
        check_network(DeafToLabels, {"hidden": [4], "time_features": 8})
    with pytest.raises(ContractError, match=r"MiscountedSampler.nfe: expected the denoiser calls per image that "
                                            r"sample makes \(8\), got 4"):
        check_sampler(MiscountedSampler)


def test_train_and_degrade_refuse_a_wrongly_shaped_degradation_in_one_line(register_plugin, runner, tmp_path):
    from conftest import invoke

    register_plugin(Plugin(), "shrinking-plugin")
    for args in (["train", "-d", "shrinks", "--network", "cnn", "--steps", 1, "--out", tmp_path / "run"],
                 ["degrade", "-d", "shrinks", "--grid", tmp_path / "g.png"]):
        result = invoke(runner, *args)
        assert result.exit_code == 1 and "plugin 'shrinking-plugin': Shrinks.degrade_mean returned (2, 1, 14, 14) " \
                                          "for a batch (2, 1, 28, 28) at t = 0" in result.output, result.output
    assert not (tmp_path / "run").exists() and not (tmp_path / "g.png").exists()
