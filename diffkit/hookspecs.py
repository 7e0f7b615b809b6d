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
def register_feature_spaces(register):
    """Call register(cls, name=...) once per FeatureSpace subclass the plugin provides (the spaces that
    `--features` picks for scoring)."""


@hookspec
def register_commands(cli):
    """Add click commands to the `diffkit` group."""


@hookspec(firstresult=True)
def score_samples(samples, settings):
    """Score `samples` (a diffkit Samples, an array of images, or a path to an .npz/.npy file or a folder of
    images) against a real split and return the scorecard; settings holds reference, dataset, n, seed,
    data_root, device, features, value_range and console. The evaluation harness implements it, and
    `diffkit.evaluate` calls it."""


@hookspec(firstresult=True)
def best_scores(folder):
    """{run name: {"fid": float, "label": str}}: the best score of each run in a report folder, for `diffkit
    runs`; None where the folder holds no report this plugin wrote."""


@hookspec
def log_metrics(run_dir, step, metrics):
    """Record figures of the run in run_dir at training step `step`: metrics is {name: float}, e.g.
    {"train/loss": 0.12, "train/images_per_s": 310.0} while training, {"eval/ddim-50/fid": 41.2} after scoring.
    Called on rank 0 only; a tracker (TensorBoard, a database) implements it."""
