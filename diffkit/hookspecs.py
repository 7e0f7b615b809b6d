"""The hooks a diffkit plugin can implement. Nothing else lives here."""

import pluggy

hookspec = pluggy.HookspecMarker("diffkit")
hookimpl = pluggy.HookimplMarker("diffkit")


@hookspec
def register_degradations(register):
    """Call register(cls, name=...) once per Degradation subclass the plugin provides."""


@hookspec
def register_networks(register):
    """Call register(cls, name=...) once per Network subclass the plugin provides."""


@hookspec
def register_samplers(register):
    """Call register(cls, name=...) once per Sampler subclass the plugin provides."""


@hookspec
def register_commands(cli):
    """Add click commands to the `diffkit` group."""


@hookspec
def log_metrics(run_dir, step, metrics):
    """Record figures of the run in run_dir at training step `step`: metrics is {name: float}, e.g.
    {"train/loss": 0.12, "train/images_per_s": 310.0} while training, {"eval/ddim-50/fid": 41.2} after scoring.
    Called on rank 0 only; a tracker (TensorBoard, a database) implements it."""
