"""The built-in feature spaces and the extraction stage: uint8 images -> features, the same on every machine.

- `classifier`: diffkit's MNIST/Fashion-MNIST classifier, 128-d features and 10 logits (the default space);
- `autoencoder`: a small autoencoder's 64-d codes, a second opinion that owes nothing to labels;
- `inception-v3`: torch-fidelity's Inception-v3 (2048-d pool features), for figures comparable with papers'
  FIDs on other data; its weights download on first use or come from a local file. Never the default.

The first two ship their weights in the package (`spaces.py`); none is trained on first use.
"""

import contextlib
import hashlib

import torch
import torch_fidelity
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

from diffkit.data import to_model_range
from diffkit.errors import DiffkitError
from diffkit.feature_space import FeatureSpace, WeightsOptions
from diffkit_eval.spaces import load_space

BATCH = 1000


@contextlib.contextmanager
def exact_arithmetic():
    """float32 without TF32 on GPUs, so a space's features do not depend on a card's default math mode."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        with torch.no_grad(), torch.autocast("cuda", enabled=False), torch.autocast("cpu", enabled=False):
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def images_hash(images):
    return hashlib.sha256(torch.as_tensor(images).contiguous().numpy().tobytes()).hexdigest()


def fit_images(space, images):
    """images as the space takes them: 1 channel repeated for a 3-channel space; a wrong size or an RGB set
    given to a 1-channel space is one line."""
    c, h, w = images.shape[1:]
    if space.image_size is not None and (h, w) != (space.image_size, space.image_size):
        raise DiffkitError(f"the {space.version} feature space takes {space.image_size}×{space.image_size} images; "
                           f"these are {h}×{w}: resize them first")
    if c == space.channels:
        return images
    if c == 1:
        return images.expand(-1, space.channels, -1, -1)
    raise DiffkitError(f"the {space.version} feature space takes {space.channels}-channel images; these have {c} "
                       f"(an RGB set given to a grey-scale space? convert it to grey scale first)")


def extract(space, images):
    """{"features": float32 (N, d) on the CPU, and "logits" where the space has them}, in batches on its device."""
    parts = []
    with exact_arithmetic():
        for chunk in torch.as_tensor(images).split(BATCH):
            out = space.embed(fit_images(space, chunk).to(space.device))
            parts.append({k: v.float().cpu() for k, v in out.items()})
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


class ShippedSpace(FeatureSpace):
    """A space whose weights ship with diffkit, one file per dataset; weights=FILE takes a local one that
    `diffkit features train` made (for a dataset without shipped weights)."""

    Options = WeightsOptions
    kind = None  # "classifier" or "autoencoder", in spaces.py's table

    def __init__(self, dataset, options=None, device="cpu"):
        super().__init__(dataset, options, device)
        model, self._info = load_space(self.kind, dataset, device, self.options.weights or None)
        self.model = model.to(memory_format=torch.channels_last)  # faster convolutions on CPUs (docs/benchmarks.md)

    def pixels(self, images):
        """uint8 images -> the network's input: [-1, 1], channels last."""
        return to_model_range(images).contiguous(memory_format=torch.channels_last)

    @property
    def version(self):
        return self._info["name"]

    @property
    def info(self):
        return {k: v for k, v in self._info.items() if k != "name"}


class ClassifierSpace(ShippedSpace):
    description = "diffkit's classifier for the dataset: 128-d features, 10 logits (the default space)"
    kind = "classifier"
    has_logits = True

    def __init__(self, dataset, options=None, device="cpu"):
        super().__init__(dataset, options, device)
        _torch_fidelity_models[self.version] = self.model
        if self.version not in FEATURE_EXTRACTORS_REGISTRY:
            torch_fidelity.register_feature_extractor(self.version, TorchFidelityClassifier)

    def embed(self, images):
        features, logits = self.model(self.pixels(images))
        return {"features": features, "logits": logits}


class AutoencoderSpace(ShippedSpace):
    description = "a small autoencoder's 64-d codes for the dataset: a second opinion that never saw a label"
    kind = "autoencoder"

    def embed(self, images):
        return {"features": self.model.encoder(self.pixels(images))}


INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"


class InceptionSpace(FeatureSpace):
    description = ("torch-fidelity's Inception-v3 (2048-d pool features), for FIDs comparable with papers'; "
                   f"weights download on first use, or give weights=PATH to a local {INCEPTION_FILE}")
    Options = WeightsOptions
    channels = 3
    image_size = None

    def __init__(self, dataset, options=None, device="cpu"):
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        super().__init__(dataset, options, device)
        path = self.options.weights or None
        try:
            self.model = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"],
                                                     feature_extractor_weights_path=path).to(device).eval()
        except Exception as exc:  # noqa: BLE001 - a download refused offline, a missing or foreign file
            raise DiffkitError(
                f"the inception-v3 space has no weights ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                f"offline, download {INCEPTION_FILE} from torch-fidelity's releases elsewhere and pass "
                f"--space-option inception-v3.weights=PATH") from None

    @property
    def version(self):
        return "inception-v3-compat-2015-12-05"

    def embed(self, images):
        return {"features": self.model(images)[0]}


_torch_fidelity_models = {}  # space version -> classifier module, for the torch-fidelity class to find


class TorchFidelityClassifier(FeatureExtractorBase):
    """The classifier as a torch-fidelity extractor, under its version name: torch_fidelity.calculate_metrics(
    feature_extractor="diffkit-mnist-v1", ...) measures in the same space as diffkit."""

    def __init__(self, name, features_list, **kwargs):
        super().__init__(name, features_list)
        self.classifier = _torch_fidelity_models[name]

    @staticmethod
    def get_provided_features_list():
        return ("128", "logits_unbiased")

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return {"isc": "logits_unbiased"}.get(metric, "128")

    @staticmethod
    def can_be_compiled():
        return False

    @staticmethod
    def get_dummy_input_for_compile():
        return torch.zeros(1, 1, 28, 28, dtype=torch.uint8)

    def forward(self, images):
        device = next(self.classifier.parameters()).device
        features, logits = self.classifier(to_model_range(images.to(device)))
        return tuple({"128": features, "logits_unbiased": logits}[name].cpu() for name in self.features_list)
