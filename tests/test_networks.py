import pytest
import torch

from diffkit.options import parse_options
from diffkit.plugins import components


@pytest.mark.parametrize("name", sorted(components("networks")))
@pytest.mark.parametrize("channels,size", [(1, 28), (3, 16)])
def test_every_registered_network_keeps_the_input_shape(name, channels, size):
    cls = components("networks")[name].cls
    net = cls(parse_options(cls.Options, {}), channels, size)
    x = torch.randn(2, channels, size, size)
    out = net(x, torch.tensor([0, 7]))
    assert out.shape == x.shape
    out.sum().backward()  # trainable end to end
    assert all(p.grad is not None for p in net.parameters())


def test_cnn_has_the_coursework_size():
    cls = components("networks")["cnn"].cls
    params = sum(p.numel() for p in cls(cls.Options(), 1, 28).parameters())
    assert 250_000 < params < 350_000


def test_unet_works_with_patches_and_four_levels():
    cls = components("networks")["unet"].cls
    net = cls(parse_options(cls.Options, {"patch_size": "2", "channel_mults": "1,2,2,2"}), 1, 28)
    assert net(torch.randn(2, 1, 28, 28), torch.tensor([1, 2])).shape == (2, 1, 28, 28)
