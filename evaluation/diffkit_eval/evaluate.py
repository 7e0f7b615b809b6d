"""Score one set of samples against a reference split, and show the scorecard."""

from rich.table import Table

from diffkit.device import resolve_device

from diffkit_eval.extractor import Extractor
from diffkit_eval.metrics import fid_bootstrap, scorecard
from diffkit_eval.reference import load_reference

# (key, label, higher is better; None: neither, read it against its reference value) in display order
METRICS = [
    ("fid", "FID", False), ("kid", "KID", False), ("precision", "precision (k=3)", True),
    ("recall", "recall (k=3)", True), ("density", "density (k=5)", True), ("coverage", "coverage (k=5)", True),
    ("inception_score", "classifier IS", True), ("class_entropy", "class entropy (ln 10 = 2.303)", True),
    ("class_kl_uniform", "class KL to uniform", False), ("mean_confidence", "mean confidence", True),
    ("nn_distance_ratio", "NN-train distance / test's", None), ("near_copies", "near copies", False),
]


class Evaluator:
    """Extractor and reference loaded once, to score many sample sets."""

    def __init__(self, dataset="mnist", split="test", data_root=None, console=None, device="cpu"):
        self.extractor = Extractor(dataset, data_root, console, resolve_device(str(device)))
        self.reference = load_reference(self.extractor, dataset, split, data_root)
        self.dataset, self.split = dataset, split

    def features(self, images):
        return {**self.extractor(images), "images": images}

    def fid(self, images, seed=0):
        """FID alone (bootstrap std), for tables that need no full scorecard."""
        fid_value, fid_std = fid_bootstrap(self.extractor(images)["features"].double(), self.reference["fid_stats"], seed)
        return {"value": fid_value, "std": fid_std, "n": len(images)}

    def score(self, images, meta=None, seed=0, features=None):
        gen = features or self.features(images)
        return {
            "metrics": scorecard(gen, self.reference, seed),
            "n": len(images),
            "reference": {"dataset": self.dataset, "split": self.split, "n": len(self.reference["features"])},
            "extractor": {"name": self.extractor.name, **self.extractor.info},
            "samples": meta or {},
        }


def format_value(entry):
    return f"{entry['value']:.4g} ± {entry['std']:.2g}"


def scorecard_table(result, title="scorecard"):
    samples = result["samples"]
    ref = result["reference"]
    caption = (f"N = {result['n']} vs {ref['dataset']} {ref['split']} (N = {ref['n']}); sampler "
               f"{samples.get('sampler', 'not recorded')}, NFE {samples.get('nfe', 'not recorded')}; features {result['extractor']['name']} "
               f"(test accuracy {result['extractor']['test_accuracy']:.2%}); ± is one standard error/deviation")
    table = Table("metric", "value ± uncertainty", "better", title=title, caption=caption)
    for key, label, higher in METRICS:
        better = {True: "higher", False: "lower", None: "≈ 1; below: copying"}[higher]
        table.add_row(label, format_value(result["metrics"][key]), better)
    table.add_row("class histogram", " ".join(map(str, result["metrics"]["class_histogram"])), "flat")
    return table
