"""`diffkit new plugin NAME`: a plugin package that installs, registers a degradation and passes its own test.

The package holds a pyproject with the `diffkit` entry point, a degradation built on the cold-diffusion base
class (so it has a fitted prior from the start), a test that runs `diffkit.testing` on it, and a README with the
commands to try it. The folder is written whole or not at all (built beside it, then renamed).
"""

import re
import shutil
import tempfile
from pathlib import Path

from diffkit.errors import DiffkitError

PYPROJECT = '''[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "diffkit-{name}"
version = "0.1.0"
description = "A diffkit plugin: the {name} degradation."
requires-python = ">=3.10"
dependencies = ["diffkit"]

[project.optional-dependencies]
test = ["pytest"]

# All diffkit needs to find the plugin: an entry point in the "diffkit" group, named after the plugin.
[project.entry-points.diffkit]
{name} = "{module}"

[tool.setuptools]
packages = ["{module}"]
'''

MODULE = '''"""The {name} degradation: a diffkit plugin.

x_t = (1 − k_t)·x0 + k_t·box(x0) with k_t = t/T: each step moves the image towards its 7×7 box blur. Replace
`degrade_mean` with your forward process; the base class (cold diffusion's) brings the options `noise`, `loss`
and a Gaussian-mixture prior over x_T, fitted on the training images, so unconditional samples start from the
prior, never from real images. See docs/plugins.md in diffkit for the whole contract.
"""

from dataclasses import dataclass, field

import torch.nn.functional as F

from diffkit import hookimpl
from diffkit.degradation import per_sample
from diffkit_cold.cold import ColdDegradation, ColdOptions

__version__ = "0.1.0"


@dataclass
class {cls}Options(ColdOptions):
    T: int = 10
    width: int = field(default=7, metadata={{"help": "side of the box blur the image moves towards (odd)"}})

    def __post_init__(self):
        super().__post_init__()  # keeps the base's checks of T, noise and the prior
        if self.width < 1 or self.width % 2 == 0:
            raise ValueError(f"width must be a positive odd number, got {{self.width}}")


class {cls}(ColdDegradation):
    Options = {cls}Options
    description = "moves each image towards its box blur in T steps (a diffkit plugin template)"

    def degrade_mean(self, x0, t, params=None):
        w = self.options.width
        box = F.avg_pool2d(x0, w, stride=1, padding=w // 2, count_include_pad=False)
        k = per_sample(t.float() / self.T, x0)
        return (1 - k) * x0 + k * box


@hookimpl
def register_degradations(register):
    register({cls}, name="{name}")
'''

TEST = '''from diffkit.testing import check_degradation
from {module} import {cls}


def test_the_degradation_keeps_the_contract():
    check_degradation({cls})
    check_degradation({cls}, {{"T": 3, "width": 3, "noise": 0.5, "loss": "l2"}})
'''

README = '''# diffkit-{name}

A diffkit plugin: the `{name}` degradation, made by `diffkit new plugin {name}`.

```bash
pip install -e ".[test]"
pytest                                            # diffkit.testing checks the contract
diffkit plugins                                   # {name}, with this distribution and version
diffkit degrade -d {name} --grid {name}.png       # the forward process on real digits
diffkit train -d {name} --preset quick --out run && diffkit sample run -n 100 --out s.npz --grid s.png
diffkit evaluate s.npz
```
'''


def new_plugin(name, parent="."):
    """Write the package `diffkit-NAME` into PARENT/diffkit-NAME; returns its folder."""
    if not re.fullmatch(r"[a-z][a-z0-9]*(-[a-z0-9]+)*", name or "") or len(name) > 40:
        raise DiffkitError(f"plugin name {name!r}: use lowercase letters and digits, words joined by '-' (e.g. "
                           f"elastic-warp), at most 40 characters")
    module = "diffkit_" + name.replace("-", "_")
    cls = "".join(part.capitalize() for part in name.split("-"))
    target = Path(parent) / f"diffkit-{name}"
    if target.exists():
        raise DiffkitError(f"{target} already exists; choose another name or folder")
    if not Path(parent).is_dir():
        raise DiffkitError(f"{parent} is not a folder")
    values = {"name": name, "module": module, "cls": cls}
    files = {"pyproject.toml": PYPROJECT, f"{module}/__init__.py": MODULE, f"tests/test_{module}.py": TEST,
             "README.md": README}
    build = Path(tempfile.mkdtemp(dir=parent, prefix=f".diffkit-{name}."))
    try:
        for path, text in files.items():
            (build / path).parent.mkdir(parents=True, exist_ok=True)
            (build / path).write_text(text.format(**values))
        build.rename(target)
    finally:
        shutil.rmtree(build, ignore_errors=True)
    return target
