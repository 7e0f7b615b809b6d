"""Built-in plugin: cold-diffusion degradations (Bansal et al. 2022) and their samplers."""

from diffkit import hookimpl
from diffkit_cold.degradations import Blur, Fade, Mask, Pixelate
from diffkit_cold.heat import Heat
from diffkit_cold.samplers import ColdSampler, DirectSampler, NaiveColdSampler


@hookimpl
def register_degradations(register):
    register(Blur, name="blur")
    register(Mask, name="mask")
    register(Pixelate, name="pixelate")
    register(Fade, name="fade")
    register(Heat, name="heat")


@hookimpl
def register_samplers(register):
    register(ColdSampler, name="cold")
    register(NaiveColdSampler, name="cold-naive")
    register(DirectSampler, name="direct")
