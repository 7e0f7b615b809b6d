"""Built-in plugin: the Gaussian DDPM forward process, its DDPM and DDIM samplers, and the ODE solvers
euler, heun and dpm++2m (which also serve flow matching)."""

from diffkit import hookimpl


@hookimpl
def register_degradations(register):
    from diffkit_gaussian.diffusion import GaussianDiffusion

    register(GaussianDiffusion, name="gaussian")


@hookimpl
def register_samplers(register):
    from diffkit_gaussian.samplers import DDIMSampler, DDPMSampler
    from diffkit_gaussian.solvers import DPMSolverPP2M, EulerSampler, HeunSampler

    register(DDPMSampler, name="ddpm")
    register(DDIMSampler, name="ddim")
    register(EulerSampler, name="euler")
    register(HeunSampler, name="heun")
    register(DPMSolverPP2M, name="dpm++2m")
