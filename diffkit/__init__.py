"""diffkit: diffusion-style generators whose forward process is a plug-in.

`diffkit.train`, `diffkit.load` and `diffkit.evaluate` are the Python API (diffkit/api.py); they are
imported on first use, so a plugin's `from diffkit import hookimpl` stays cheap.
"""

from typing import TYPE_CHECKING

from diffkit.hookspecs import hookimpl

__version__ = "0.1.0"
__all__ = ["hookimpl", "__version__", "train", "load", "evaluate"]

if TYPE_CHECKING:
    from diffkit.api import evaluate, load, train


def __dir__():
    """The public API, for dir(diffkit) and completion in notebooks (the lazy names included)."""
    return sorted(__all__)


def __getattr__(name):
    if name in ("train", "load", "evaluate"):
        from diffkit import api

        return getattr(api, name)
    raise AttributeError(f"module 'diffkit' has no attribute {name!r}")
