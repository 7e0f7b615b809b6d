"""The feature spaces that score samples: the classifier (a torch-fidelity feature extractor, its 128-d
features and logits) and the autoencoder's 64-d codes (a second opinion that owes nothing to labels)."""

import torch
import torch_fidelity
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

from diffkit.data import to_model_range
from diffkit_eval.autoencoder import load_autoencoder
from diffkit_eval.classifier import load_classifier

_loaded = {}  # extractor name -> classifier module, for the torch-fidelity class to find


def extractor_name(dataset, info):
    """Named after the weights: torch-fidelity caches by name, so new weights need a new name."""
    return f"diffkit-{dataset}-{info['weights_sha256'][:12]}"


class ClassifierFeatures(FeatureExtractorBase):
    """torch-fidelity extractor: uint8 (B, 1, 28, 28) -> ("128" features, "logits_unbiased")."""

    def __init__(self, name, features_list, **kwargs):
        super().__init__(name, features_list)
        self.classifier = _loaded[name]

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


class Extractor:
    """The dataset's classifier, registered with torch-fidelity under its weights-hash name."""

    def __init__(self, dataset="mnist", data_root=None, console=None, device="cpu"):
        self.classifier, self.info = load_classifier(dataset, data_root, console, device)
        self.name = extractor_name(dataset, self.info)
        _loaded[self.name] = self.classifier
        if self.name not in FEATURE_EXTRACTORS_REGISTRY:
            torch_fidelity.register_feature_extractor(self.name, ClassifierFeatures)

    @torch.no_grad()
    def __call__(self, images):
        """uint8 (N, 1, 28, 28) -> {"features": (N, 128), "logits": (N, 10)} on the CPU, through the
        torch-fidelity module, computed on the classifier's device."""
        module = ClassifierFeatures(self.name, ["128", "logits_unbiased"])
        parts = [module(chunk) for chunk in torch.as_tensor(images).split(1000)]
        return {"features": torch.cat([p[0] for p in parts]), "logits": torch.cat([p[1] for p in parts])}


class CodeSpace:
    """The autoencoder's codes as a feature space, named after its weights."""

    def __init__(self, dataset="mnist", data_root=None, console=None, device="cpu"):
        self.model, self.info = load_autoencoder(dataset, data_root, console, device)
        self.name = f"diffkit-{dataset}-ae-{self.info['weights_sha256'][:12]}"

    @torch.no_grad()
    def __call__(self, images):
        """uint8 (N, 1, 28, 28) -> (N, 64) codes on the CPU."""
        device = next(self.model.parameters()).device
        return torch.cat([self.model.encoder(to_model_range(chunk.to(device))).cpu()
                          for chunk in torch.as_tensor(images).split(1000)])
