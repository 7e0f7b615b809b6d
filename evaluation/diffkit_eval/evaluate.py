"""Score one set of samples against a reference split, and show the scorecard."""

import functools

from rich.table import Table

from diffkit.device import resolve_device

from diffkit_eval.extractor import CodeSpace, Extractor
from diffkit_eval.metrics import fid_bootstrap, scorecard, value
from diffkit_eval.reference import load_code_reference, load_reference

# (key, label, higher is better: True/False, or how to read a figure that is neither) in display order
METRICS = [
    ("fid", "FID", False), ("kid", "KID", False), ("precision", "precision (k=3)", True),
    ("recall", "recall (k=3)", True), ("density", "density (k=5)", True), ("coverage", "coverage (k=5)", True),
    ("vendi", "Vendi score", True), ("fid_codes", "FID, autoencoder codes", False),
    ("inception_score", "classifier IS", True), ("class_entropy", "class entropy (ln 10 = 2.303)", True),
    ("class_kl_uniform", "class KL to uniform", False), ("mean_confidence", "mean confidence", True),
    ("nn_distance_ratio", "NN-train distance / test's", "≈ 1; below: copying"), ("near_copies", "near copies", False),
    ("authenticity", "authenticity", "≈ real test images'; below: copying"),
]


class Evaluator:
    """Both feature spaces and their references loaded once, to score many sample sets."""

    def __init__(self, dataset="mnist", split="test", data_root=None, console=None, device="cpu"):
        device = resolve_device(str(device))
        self.extractor = Extractor(dataset, data_root, console, device)
        self.reference = load_reference(self.extractor, dataset, split, data_root)
        self.dataset, self.split = dataset, split
        self._code_args = (data_root, console, device)

    @functools.cached_property
    def codes(self):
        """The autoencoder's feature space, loaded (or trained) only when a score needs it: `fid` does not."""
        data_root, console, device = self._code_args
        return CodeSpace(self.dataset, data_root, console, device)

    @functools.cached_property
    def code_reference(self):
        return load_code_reference(self.codes, self.dataset, self.split, self._code_args[0])

    def features(self, images):
        """{"features", "logits"} of the classifier, "codes" of the autoencoder, and the images."""
        return {**self.extractor(images), "codes": self.codes(images), "images": images}

    @property
    def spaces(self):
        """The names of both feature spaces, for reports and cache keys."""
        return {"classifier": self.extractor.name, "autoencoder": self.codes.name}

    def fid(self, images, seed=0):
        """FID alone (bootstrap std), for tables that need no full scorecard."""
        fid_value, fid_std = fid_bootstrap(self.extractor(images)["features"].double(), self.reference["fid_stats"], seed)
        return value(fid_value, fid_std, len(images))

    def score(self, images, meta=None, seed=0, features=None):
        gen = features or self.features(images)
        metrics = scorecard(gen, self.reference, seed)
        codes_fid, codes_std = fid_bootstrap(gen["codes"].double(), self.code_reference, seed)
        metrics["fid_codes"] = value(codes_fid, codes_std, len(images))
        return {
            "metrics": metrics,
            "n": len(images),
            "reference": {"dataset": self.dataset, "split": self.split, "n": len(self.reference["features"])},
            "extractor": {"name": self.extractor.name, **self.extractor.info},
            "second_extractor": {"name": self.codes.name, **self.codes.info},
            "samples": meta or {},
        }


def scorecard_table(result, title="scorecard"):
    samples = result["samples"]
    ref = result["reference"]
    caption = (f"N = {result['n']} vs {ref['dataset']} {ref['split']} (N = {ref['n']}); sampler "
               f"{samples.get('sampler', 'not recorded')}, NFE {samples.get('nfe', 'not recorded')}; features {result['extractor']['name']} "
               f"(test accuracy {result['extractor']['test_accuracy']:.2%}); ± is one standard error/deviation")
    table = Table("metric", "value ± uncertainty", "better", title=title, caption=caption)
    for key, label, higher in METRICS:
        better = {True: "higher", False: "lower"}.get(higher, higher)
        table.add_row(label, str(result["metrics"][key]), better)
    table.add_row("class histogram", " ".join(map(str, result["metrics"]["class_histogram"])), "flat")
    return table
