"""diffkit: diffusion-style generators whose forward process is a plug-in."""

from diffkit.hookspecs import hookimpl

__version__ = "0.1.0"
__all__ = ["hookimpl", "__version__"]
