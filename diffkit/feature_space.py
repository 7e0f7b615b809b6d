"""The feature-space contract: a network that maps images to the vectors every score is computed in.

A FID, a precision or a recall is a number *in a feature space*, comparable only with numbers from the
same space and the same weights. So a space has a `version` that names its weights (e.g.
`diffkit-mnist-v1`), and every score diffkit writes carries it. The scoring harness calls `embed` on
batches of uint8 images on the space's device, in float32, with TF32 off, under no_grad; it batches,
caches by content hash and version, and computes every metric from what `embed` returns.
"""

from dataclasses import dataclass, field

from diffkit.degradation import NoOptions


@dataclass
class WeightsOptions:
    """For spaces whose weights are a file the user may point at."""

    weights: str = field(default="", metadata={"help": "a local weights file instead of the space's own (shipped "
                                                       "with diffkit, or downloaded on first use)"})


class FeatureSpace:
    Options = NoOptions
    description = ""
    channels = 1  # images it takes; 1-channel images are repeated for a 3-channel space
    image_size = 28  # the height and width it takes, or None for any size (it resizes itself)
    datasets = None  # the datasets its weights were made for, or None for any
    has_logits = False  # whether `embed` also returns class logits (the class metrics need them)

    def __init__(self, dataset, options=None, device="cpu"):
        self.dataset = dataset
        self.options = options if options is not None else self.Options()
        self.device = device

    @property
    def version(self):
        """The name of the weights, e.g. diffkit-mnist-v1: a number in another version is another number."""
        raise NotImplementedError

    @property
    def info(self):
        """What a report records about the space beside its version (test accuracy, training data...)."""
        return {}

    def embed(self, images):
        """uint8 images (B, C, H, W) on self.device -> {"features": float32 (B, d)}, plus "logits" (B, classes)
        when has_logits."""
        raise NotImplementedError
