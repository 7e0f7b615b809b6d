"""Built-in plugin: the Gaussian DDPM forward process and its DDPM and DDIM samplers."""

from diffkit import hookimpl
from diffkit_gaussian.diffusion import GaussianDiffusion
from diffkit_gaussian.samplers import DDIMSampler, DDPMSampler


@hookimpl
def register_degradations(register):
    register(GaussianDiffusion, name="gaussian")


@hookimpl
def register_samplers(register):
    register(DDPMSampler, name="ddpm")
    register(DDIMSampler, name="ddim")
