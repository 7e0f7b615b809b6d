"""Built-in plugin: cold-diffusion degradations (Bansal et al. 2022) and their samplers."""

from diffkit import hookimpl


@hookimpl
def register_degradations(register):
    from diffkit_cold.degradations import Blur, Fade, Mask, Pixelate
    from diffkit_cold.heat import Heat

    register(Blur, name="blur")
    register(Mask, name="mask")
    register(Pixelate, name="pixelate")
    register(Fade, name="fade")
    register(Heat, name="heat")


@hookimpl
def register_samplers(register):
    from diffkit_cold.samplers import ColdSampler, DirectSampler, HeunColdSampler, NaiveColdSampler

    register(ColdSampler, name="cold")
    register(NaiveColdSampler, name="cold-naive")
    register(HeunColdSampler, name="cold-heun")
    register(DirectSampler, name="direct")
