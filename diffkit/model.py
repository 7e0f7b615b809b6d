"""Turn a RunConfig (or a run directory) into live components."""

from dataclasses import dataclass

from diffkit import __version__
from diffkit.checkpoint import load_checkpoint, split_prefix
from diffkit.config import RunConfig
from diffkit.errors import DiffkitError
from diffkit.options import options_dict, parse_options
from diffkit.plugins import get_component, provenance

DATASET_SHAPES = {"mnist": (1, 28), "fashion-mnist": (1, 28)}


def build_degradation(name, options):
    component = get_component("degradations", name)
    return component, component.cls(parse_options(component.cls.Options, options, f"degradation {name!r}"))


def build_network(name, options, channels, image_size):
    component = get_component("networks", name)
    parsed = parse_options(component.cls.Options, options, f"network {name!r}")
    try:
        return component, component.cls(parsed, channels, image_size)
    except ValueError as exc:
        raise DiffkitError(f"network {name!r}: {exc}") from None


def build_sampler(name, options, degradation, degradation_name):
    component = get_component("samplers", name)
    sampler = component.cls(parse_options(component.cls.Options, options, f"sampler {name!r}"))
    if not sampler.supports(degradation):
        raise DiffkitError(f"sampler {name!r} does not support degradation {degradation_name!r}")
    return component, sampler


@dataclass
class Model:
    """What sampling needs: the degradation with its fitted prior and the EMA network."""

    config: RunConfig
    degradation: object
    network: object
    step: int
    state: dict
    components: tuple

    def sampler(self, name=None, options=None):
        name = name or self.config.sampler
        if options is None:  # the run's own options belong to the run's own sampler only
            options = self.config.sampler_options if name == self.config.sampler else {}
        return build_sampler(name, options, self.degradation, self.config.degradation)

    def versions(self, *extra):
        return {"diffkit": __version__, **provenance(*self.components, *extra)}


def build_model(config):
    """Fresh degradation and network for a config (weights at initialisation)."""
    if config.dataset not in DATASET_SHAPES:
        raise DiffkitError(f"unknown dataset {config.dataset!r}; known datasets: {', '.join(DATASET_SHAPES)}")
    channels, size = DATASET_SHAPES[config.dataset]
    d_component, degradation = build_degradation(config.degradation, config.degradation_options)
    config.sampler = config.sampler or degradation.default_sampler
    n_component, network = build_network(config.network, config.network_options, channels, size)
    _, sampler = build_sampler(config.sampler, config.sampler_options, degradation, config.degradation)
    # The config records every option with its type and default, not just what was given.
    config.degradation_options = options_dict(degradation.options)
    config.network_options = options_dict(network.options)
    config.sampler_options = options_dict(sampler.options)
    return Model(config, degradation, network, 0, {}, (d_component, n_component))


def load_model(run_dir):
    """Rebuild a trained model from its run directory alone, with EMA weights."""
    tensors, state = load_checkpoint(run_dir)
    model = build_model(RunConfig.from_dict(state["config"]))
    try:
        model.network.load_state_dict(split_prefix(tensors, "ema"))
    except RuntimeError as exc:
        raise DiffkitError(f"checkpoint in {run_dir} does not match its network: {str(exc).splitlines()[0]}") from None
    model.network.eval()
    model.degradation.load_prior_state(split_prefix(tensors, "prior"))
    model.step, model.state = state["step"], state
    return model
