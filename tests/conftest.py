import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from diffkit.plugins import manager

ROOT = Path(__file__).resolve().parents[1]
if "DIFFKIT_DATA" not in os.environ and (ROOT.parent / "shared" / "data").is_dir():
    os.environ["DIFFKIT_DATA"] = str(ROOT.parent / "shared" / "data")

# The evaluation classifier and reference features are cached here, not in the user's cache.
os.environ.setdefault("DIFFKIT_CACHE", str(ROOT / ".pytest_cache" / "diffkit"))

# The built-in plugins only: whatever else is installed on this machine stays out of the tests.
BUILTINS = "gaussian,networks,cold,flow,evaluation,tensorboard"
os.environ["DIFFKIT_PLUGINS"] = BUILTINS

# Tiny components: every CLI test trains in a second or two.
TINY = ["-o", "T=20", "-o", "hidden=4,8", "-o", "time_features=8", "--batch-size", "8"]


@pytest.fixture
def runner():
    return CliRunner()


@pytest.fixture
def register_plugin():
    """Register plugin objects for one test; always unregistered afterwards."""
    registered = []

    def register(plugin, name):
        manager().register(plugin, name=name)
        registered.append(plugin)
        return plugin

    yield register
    for plugin in registered:
        manager().unregister(plugin)


def invoke(runner, *args):
    from diffkit.cli import cli

    return runner.invoke(cli, [str(a) for a in args])


def figure_keeper(names, drawn):
    """A stand-in for diffkit_eval.figures.figure that draws as usual and also keeps the figures named in `names`
    open in `drawn` (by file name), so a test can read back what they plot."""
    import matplotlib.pyplot as plt

    from diffkit_eval import figures

    real = figures.figure

    def keep(path, draw, size=(6, 4)):
        if Path(path).name in names:
            fig = plt.figure(figsize=size)
            draw(fig)
            drawn[Path(path).name] = fig
        real(path, draw, size)

    return keep
