"""A contract kit for plugin authors, in the spirit of scikit-learn's `check_estimator`.

    from diffkit.testing import check_degradation, check_network, check_sampler

    def test_my_plugin():
        check_degradation(Darken)               # or check_degradation(Darken, {"T": 5})
        check_network(Tiny)
        check_sampler(ShrinkingNoise)

Each check builds the component from its `Options`, runs every method of the documented contract on small
batches and raises `ContractError` (an AssertionError) naming the plugin, the class, the method and what was
expected. The checks run on the CPU in a second or two; the default device is set to `meta` while they run,
so a tensor a component makes without taking its input's device shows up.
"""

import torch

from diffkit import draws
from diffkit.degradation import Degradation, takes_labels
from diffkit.denoiser import Denoiser
from diffkit.network import Network
from diffkit.options import parse_options
from diffkit.sampler import Sampler

SHAPE = (1, 28, 28)


class ContractError(AssertionError):
    """A component breaks the documented contract; the message says where and what was expected."""


def _owner(cls):
    """"plugin NAME (distribution)" for a registered class, else "unregistered"."""
    from diffkit.plugins import KINDS, components

    for kind in KINDS:
        for component in components(kind).values():
            if component.cls is cls:
                installed = "" if component.distribution.startswith("(") else f" ({component.distribution})"
                return f"plugin {component.plugin!r}{installed}"
    return "unregistered"


class _Checker:
    def __init__(self, cls):
        self.where = f"{_owner(cls)}: {cls.__name__}"

    def call(self, method, fn, *args, **kwargs):
        """fn(*args, **kwargs), with any exception it raises reported as a broken `method`."""
        try:
            return fn(*args, **kwargs)
        except ContractError:
            raise
        except Exception as exc:  # noqa: BLE001 - whatever a plugin raises is the finding
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise ContractError(f"{self.where}.{method}: raised {type(exc).__name__}: {first}") from exc

    def require(self, ok, method, expected, got=None):
        if not ok:
            found = "" if got is None else f", got {got}"
            raise ContractError(f"{self.where}.{method}: expected {expected}{found}")

    def tensor(self, value, method, shape, device="cpu"):
        """`value` is a finite float tensor of `shape` on `device`."""
        self.require(isinstance(value, torch.Tensor), method, "a torch.Tensor", type(value).__name__)
        self.require(tuple(value.shape) == tuple(shape), method, f"shape {tuple(shape)}", tuple(value.shape))
        self.require(value.device.type == device, method, f"a tensor on the input's device ({device})",
                     value.device.type)
        self.require(value.is_floating_point(), method, "a floating-point tensor", value.dtype)
        self.require(bool(torch.isfinite(value).all()), method, "finite values", "NaN or inf")
        return value


def _digits(n, seed=0):
    """n blurry blob 'images' in [-1, 1]: something image-like to fit priors on, without any dataset."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 1, 7, 7, generator=g)
    return torch.nn.functional.interpolate(coarse, size=SHAPE[1:], mode="bilinear") * 2 - 1


def _tiny_network():
    from diffkit_networks.cnn import CNN, CNNOptions

    torch.manual_seed(0)
    return CNN(CNNOptions(hidden=(4,), time_features=8), SHAPE[0], SHAPE[1])


def _steps(t, n):
    return torch.full((n,), t, dtype=torch.long, device="cpu")


def check_degradation(cls, options=None):
    """The Degradation contract: options, T, shapes, devices and dtypes of every method, identity at t = 0,
    determinism under a seed, the prior (fit, draw, save and load), one training step and a short sampling run."""
    c = _Checker(cls)
    c.require(isinstance(cls, type) and issubclass(cls, Degradation), "__class__", "a subclass of Degradation")
    d = c.call("__init__", cls, parse_options(cls.Options, dict(options or {}), cls.__name__))
    c.require(isinstance(d.T, int) and not isinstance(d.T, bool) and d.T >= 1, "T", "a positive int", repr(d.T))
    n, images = 4, _digits(64)
    x0, network = images[:n], _tiny_network()
    with torch.device("meta"):  # a tensor made without the input's device lands here and is caught
        params = c.call("draw_params", d.draw_params, n, torch.Generator().manual_seed(0))
        for t in (0, 1, d.T):
            mean = c.tensor(c.call("degrade_mean", d.degrade_mean, x0, _steps(t, n), params), "degrade_mean", x0.shape)
            if t == 0:
                c.require(torch.allclose(mean, x0, atol=1e-5), "degrade_mean", "the identity at t = 0",
                          f"a change of {float((mean - x0).abs().max()):.3g}")
            std = c.tensor(c.call("noise_std", d.noise_std, _steps(t, n)), "noise_std", (n,))
            c.require(bool((std >= 0).all()), "noise_std", "standard deviations >= 0", std.tolist())
            signal = c.call("signal_std", d.signal_std, _steps(t, n))
            if signal is not None:
                c.tensor(signal, "signal_std", (n,))
        t = c.call("sample_timesteps", d.sample_timesteps, n, torch.Generator().manual_seed(0))
        c.require(isinstance(t, torch.Tensor) and t.shape == (n,) and not t.is_floating_point(), "sample_timesteps",
                  f"{n} integer steps", t)
        c.require(bool(((t >= 1) & (t <= d.T)).all()), "sample_timesteps", f"steps in 1..T={d.T}", t.tolist())
        twice = [c.call("degrade", d.degrade, x0, _steps(d.T, n), torch.Generator().manual_seed(3), params=params)
                 for _ in range(2)]
        c.require(torch.equal(*twice), "degrade", "the same output for the same generator seed")

        c.call("fit_prior", d.fit_prior, images, torch.Generator().manual_seed(0))
        prior = [c.call("sample_prior", d.sample_prior, n, SHAPE, torch.Generator().manual_seed(5)) for _ in range(2)]
        c.tensor(prior[0], "sample_prior", (n, *SHAPE))
        c.require(torch.equal(*prior), "sample_prior", "the same draws for the same generator seed")
        c.require(float(prior[0].abs().max()) < 20, "sample_prior", "draws of the scale of images in [-1, 1]",
                  f"|x| up to {float(prior[0].abs().max()):.3g}")
        state = c.call("prior_state", d.prior_state)
        c.require(isinstance(state, dict) and all(isinstance(v, torch.Tensor) for v in state.values()),
                  "prior_state", "a dict of tensors")
        fresh = c.call("__init__", cls, d.options)
        c.call("load_prior_state", fresh.load_prior_state, {k: v.clone() for k, v in state.items()})
        again = c.call("sample_prior", fresh.sample_prior, n, SHAPE, torch.Generator().manual_seed(5))
        c.require(torch.equal(again, prior[0]), "load_prior_state", "the fitted prior's draws after a save and load")

        if takes_labels(d.fit_prior):  # a class-conditional prior: fitted per class, drawn per label
            labels = torch.arange(len(images), device="cpu") % 10
            c.call("fit_prior", d.fit_prior, images, torch.Generator().manual_seed(0), labels=labels)
            asked = torch.tensor([0, 3, 9, 10], device="cpu")[:n]
            by_class = c.call("sample_prior", d.sample_prior, n, SHAPE, torch.Generator().manual_seed(5), labels=asked)
            c.tensor(by_class, "sample_prior", (n, *SHAPE))
            c.require(takes_labels(d.sample_prior), "sample_prior", "a labels parameter, as fit_prior has")

        noise = draws.randn(x0.shape, torch.Generator().manual_seed(1), "cpu")
        losses = c.tensor(c.call("training_losses", d.training_losses, network, x0, t, noise, params),
                          "training_losses", (n,))
        losses.mean().backward()
        c.require(any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in network.parameters()),
                  "training_losses", "a loss whose gradient reaches the network")
        from diffkit.plugins import get_component

        sampler = get_component("samplers", d.default_sampler).cls()
        sampled = c.call(f"default_sampler ({d.default_sampler!r})", sampler.sample, Denoiser(network.eval(), d),
                         prior[0], min(3, d.T), torch.Generator().manual_seed(2), params=params)
        c.tensor(sampled, f"default_sampler ({d.default_sampler!r})", (n, *SHAPE))


def check_network(cls, options=None):
    """The Network contract: x_t's shape in and out on x_t's device, finite, gradients reach every parameter; a
    network that takes `classes` uses its labels, and labels=None means the null label."""
    c = _Checker(cls)
    c.require(isinstance(cls, type) and issubclass(cls, Network), "__class__", "a subclass of Network")
    parsed = parse_options(cls.Options, dict(options or {}), cls.__name__)
    torch.manual_seed(0)
    network = c.call("__init__", cls, parsed, SHAPE[0], SHAPE[1])
    x, t = _digits(3), torch.tensor([1, 5, 10])
    with torch.device("meta"):
        out = c.tensor(c.call("forward", network, x, t), "forward", x.shape)
        out.square().mean().backward()
    frozen = [name for name, p in network.named_parameters() if p.requires_grad and p.grad is None]
    c.require(not frozen, "forward", "a gradient for every parameter", f"none for {frozen[:3]}")
    import inspect

    if "classes" not in inspect.signature(cls.__init__).parameters:
        return
    torch.manual_seed(0)
    conditional = c.call("__init__", cls, parsed, SHAPE[0], SHAPE[1], classes=10)
    c.require(conditional.classes == 10, "__init__", "classes passed on to Network.__init__ (self.classes == 10)",
              getattr(conditional, "classes", None))
    with torch.no_grad(), torch.device("meta"):
        for p in conditional.parameters():
            p.add_(torch.randn(p.shape, device="cpu") * 0.1)  # past any zero initialisation
        labels, null = torch.tensor([0, 3, 7], device="cpu"), torch.full((3,), 10, device="cpu")
        c.tensor(c.call("forward", conditional, x, t, labels), "forward", x.shape)
        c.require(not torch.allclose(conditional(x, t, labels), conditional(x, t, null)), "forward",
                  "an output that depends on labels")
        c.require(torch.equal(conditional(x, t), conditional(x, t, null)), "forward",
                  "labels=None to mean the null label (classes)")


def check_sampler(cls, options=None, degradation="blur", degradation_options=None):
    """The Sampler contract on a built-in degradation it supports (blur by default; "gaussian" for Gaussian
    samplers): timesteps from T down to 0, `nfe` equal to the denoiser calls it makes, the batch's shape on its
    device, determinism under a seed, and an exact restoration from a perfect denoiser."""
    from diffkit.plugins import get_component

    c = _Checker(cls)
    c.require(isinstance(cls, type) and issubclass(cls, Sampler), "__class__", "a subclass of Sampler")
    sampler = cls(parse_options(cls.Options, dict(options or {}), cls.__name__))
    d_cls = get_component("degradations", degradation).cls
    d = d_cls(parse_options(d_cls.Options, dict(degradation_options or {"T": 10})))
    c.require(sampler.supports(d), "supports", f"True for degradation {degradation!r} (pass another degradation=)")
    steps = min(4, d.T)
    grid = sampler.timesteps(d, sampler.fixed_steps or steps)
    c.require(grid[0] == d.T and grid[-1] == 0 and all(a > b for a, b in zip(grid, grid[1:])), "timesteps",
              f"integers falling from T={d.T} to 0", grid)
    x0, n = _digits(3), 3
    d.fit_prior(_digits(64), torch.Generator().manual_seed(0))
    x_T = d.degrade(x0, _steps(d.T, n), torch.Generator().manual_seed(1))
    calls = []

    def perfect(x, t):
        calls.append(len(x))
        return x0

    denoiser = Denoiser(perfect, _PredictsX0(d))
    with torch.device("meta"):
        runs = [c.call("sample", sampler.sample, denoiser, x_T, steps, torch.Generator().manual_seed(2))
                for _ in range(2)]
    c.tensor(runs[0], "sample", x_T.shape)
    c.require(torch.equal(*runs), "sample", "the same output for the same generator seed")
    nfe = sampler.nfe(d, sampler.fixed_steps or steps)
    c.require(sum(calls) == 2 * n * nfe, "nfe", f"the denoiser calls per image that sample makes ({sum(calls) // (2 * n)})",
              nfe)
    error = float((runs[0] - x0).abs().max())
    c.require(error < 0.05, "sample", "x0 back (within 0.05) from a denoiser that always returns x0",
              f"a max error of {error:.3g}")


class _PredictsX0:
    """A degradation seen through a network that predicts x̂0 itself, whatever target it trains: so a perfect
    denoiser is the clean batch."""

    def __init__(self, degradation):
        self._d = degradation

    def __getattr__(self, name):
        return getattr(self._d, name)

    def predict_x0(self, network, x_t, t):
        return network(x_t, t)
