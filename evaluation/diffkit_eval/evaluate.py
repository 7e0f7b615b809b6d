"""Score sets of images against a real split, in named stages: images -> features (`features.py`) ->
statistics (`reference.py`) -> metrics (`metrics.py`); the scorecard table for the terminal.

Every figure is measured in a feature space and carries its version: the primary space (the first of
`--features`, the classifier by default) gives FID, KID, precision/recall, density/coverage and Vendi; a
second space gives a second FID. The class metrics always come from the dataset's classifier, and the
memorisation figures from pixels.
"""

import contextlib
import hashlib
import json
from pathlib import Path

import torch
from rich.markup import escape
from rich.table import Table
from safetensors import SafetensorError
from safetensors.torch import save_file

from diffkit import __version__
from diffkit.atomic import atomic_path, write_text
from diffkit.checkpoint import read_tensors
from diffkit.data import load_images, load_labels
from diffkit.device import resolve_device
from diffkit.errors import DiffkitError
from diffkit.options import parse_options
from diffkit.plugins import get_component, provenance, source_sha256

from diffkit_eval.features import extract, images_hash
from diffkit_eval.metrics import (MIN_SAMPLES, class_scores, conditional_scores, fid_bootstrap, fid_statistics,
                                  from_plain, memorisation, plain, size_curve, space_metrics, estimate)
from diffkit_eval.reference import memorisation_reference, reference_statistics, space_reference

DEFAULT_FEATURES = ("classifier", "autoencoder")
CURVE_SIZES = (500, 1000, 2000, 5000, 10_000)


def curve_sizes(n):
    """The sample sizes of a set's FID-against-N curve: the usual ones below N, N itself and N / 2."""
    return sorted({s for s in CURVE_SIZES if s < n} | {n, max(MIN_SAMPLES, n // 2)})

# (key, label, higher is better: True/False, or how to read a figure that is neither) in display order
METRICS = [
    ("fid", "FID", False), ("kid", "KID", False), ("precision", "precision (k=3)", True),
    ("recall", "recall (k=3)", True), ("density", "density (k=5)", True), ("coverage", "coverage (k=5)", True),
    ("vendi", "Vendi score", True), ("fid_second", "FID, second space", False),
    ("inception_score", "classifier IS", True), ("class_entropy", "class entropy (ln 10 = 2.303)", True),
    ("class_kl_uniform", "class KL to uniform", False), ("mean_confidence", "mean confidence", True),
    ("nn_distance_ratio", "NN-train distance / test's", "≈ 1; below: copying"), ("near_copies", "near copies", False),
    ("authenticity", "authenticity", "≈ real test images'; below: copying"),
    ("conditioned_accuracy", "conditioned accuracy", True), ("class_fid", "per-class FID (mean)", False),
]


def parse_features(text):
    """("classifier", "autoencoder") from "classifier,autoencoder": one or two distinct space names."""
    names = tuple(n.strip() for n in str(text).split(",") if n.strip()) if isinstance(text, str) else tuple(text)
    if not 1 <= len(names) <= 2 or len(set(names)) != len(names) or not all(isinstance(n, str) for n in names):
        raise DiffkitError(f"--features takes one or two distinct feature-space names like classifier,autoencoder "
                           f"(got {text!r}); `diffkit list feature_spaces` shows them")
    return names


def space_class(name, dataset, options=None):
    """(class, parsed options) of a registered feature space, checked against the dataset, without building it
    (which may load or download weights): compare checks its config with this before anything trains."""
    cls = get_component("feature_spaces", name).cls
    if cls.datasets is not None and dataset not in cls.datasets:
        raise DiffkitError(f"feature space {name!r} has weights for {', '.join(cls.datasets)}, not {dataset!r}")
    return cls, parse_options(cls.Options, dict(options or {}), f"feature space {name!r}")


def build_space(name, dataset, options=None, device="cpu"):
    """A registered feature space, checked against the dataset and its options."""
    cls, parsed = space_class(name, dataset, options)
    space = cls(dataset, parsed, device)
    space.name = name
    return space


def describe_space(space):
    """What a report records of a space: its registered name, the version of its weights and what it knows."""
    return {"name": space.name, "version": space.version, **space.info}


@contextlib.contextmanager
def one_thread():
    """Compute on one CPU thread: a multithreaded sum adds in another order, so a score's last digits would
    depend on the cores of whichever executor ran it. Scores in the cache are the same from every executor."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class Evaluator:
    """The feature spaces and their references, loaded once, to score many image sets.

    The floor is the reference split in two fixed halves, its even-numbered images scored against the
    statistics of its odd-numbered ones: it depends on nothing but the split (the official test split by
    default). Interleaved, not first against second half: MNIST's test split puts its cleaner writers first,
    and its halves score far apart where interleaved halves score near zero (docs/benchmarks.md, the floor)."""

    def __init__(self, dataset="mnist", split="test", data_root=None, console=None, device="cpu",
                 features=DEFAULT_FEATURES, space_options=None):
        device = resolve_device(device)
        self.dataset, self.split, self.data_root = dataset, split, data_root
        self.spaces = [build_space(n, dataset, (space_options or {}).get(n), device) for n in parse_features(features)]
        self.classifier = next((s for s in self.spaces if s.name == "classifier"), None) \
            or build_space("classifier", dataset, None, device)
        self.images = load_images(dataset, split, data_root)
        self.references = [space_reference(s, self.images, f"{dataset}-{split}") for s in self.spaces]
        self.floor_references = [reference_statistics(r["features"][1::2]) for r in self.references]
        self.train_images = load_images(dataset, "train", data_root)
        test = self.images if split == "test" else load_images(dataset, "test", data_root)
        self.memory = memorisation_reference(test, self.train_images)
        self._class_references = None

    def class_references(self):
        """FID statistics of the reference split's images of each class in the primary space, for conditional
        sets (made on first use)."""
        if self._class_references is None:
            labels = load_labels(self.dataset, self.split, self.data_root)
            features = self.references[0]["features"]
            self._class_references = [fid_statistics(features[labels == c]) for c in range(int(labels.max()) + 1)]
        return self._class_references

    @property
    def versions(self):
        """The versions of the spaces that score, for reports and cache keys."""
        return [s.version for s in self.spaces] + [self.classifier.version]

    @property
    def code(self):
        """The code that decides a score: the feature spaces' plugins and this scoring code, with their source
        hashes (see `Component.code`)."""
        spaces = [get_component("feature_spaces", s.name) for s in [*self.spaces, self.classifier]]
        return {**provenance(*spaces), "scoring": source_sha256(__name__)[:12]}

    def floor_images(self, n):
        """The floor's images: n of the reference split's even-numbered images (at most half the split), in a
        fixed random order (seed 0): not the first n, since MNIST's test split puts one population of writers
        first, and its first 1,000 even-numbered digits score more than twice as far from the odd half as 1,000
        drawn at random."""
        even = self.images[0::2]
        return even[torch.randperm(len(even), generator=torch.Generator().manual_seed(0))[:n]]

    def features(self, images):
        """{"features": primary space, "second": the second space's, "logits": the classifier's, "images"}."""
        spaces = [extract(s, images) for s in self.spaces]
        logits = next((f["logits"] for s, f in zip(self.spaces, spaces) if s is self.classifier), None)
        if logits is None:
            logits = extract(self.classifier, images)["logits"]
        return {"features": spaces[0]["features"], "logits": logits, "images": images,
                **({"second": spaces[1]["features"]} if len(spaces) > 1 else {})}

    def fid(self, images, seed=0):
        """FID in the primary space alone (bootstrap std), for tables that need no full scorecard."""
        return estimate(*fid_bootstrap(extract(self.spaces[0], images)["features"], self.references[0], seed), len(images))

    def score_cached(self, images, meta, seed, folder, floor=False, console=None, labels=None):
        """(features, score, FID-against-N curve) of one image set, cached in `folder` under a hash of the images
        (and of their class labels), the versions of the feature spaces, the reference, the seed and diffkit's
        version: change any of them and it is recomputed. An entry that cannot be read is made again, with a
        warning."""
        asked = None if labels is None else hashlib.sha256(labels.numpy().tobytes()).hexdigest()
        key = hashlib.sha256(json.dumps({"images": images_hash(images), "spaces": self.versions,
                                         "reference": self.split, "floor": floor, "seed": seed, "labels": asked,
                                         "diffkit": __version__, "code": self.code}, sort_keys=True).encode()).hexdigest()
        features_path, score_path = Path(folder) / f"{key}.safetensors", Path(folder) / f"{key}.json"
        if features_path.exists() or score_path.exists():
            try:
                features = {**read_tensors(features_path), "images": images}
                cached = from_plain(json.loads(score_path.read_text()))
                return features, {**cached["score"], "samples": meta}, {int(k): v for k, v in cached["curve"].items()}
            except (OSError, ValueError, KeyError, TypeError, SafetensorError):
                if console is not None:
                    console.print(f"[yellow]Warning: the score cache {escape(str(features_path.with_suffix('')))} is "
                                  f"unreadable; scoring again")
        with one_thread():
            features = self.features(images)
            score = self.score(images, meta, seed, features, floor=floor, labels=labels)
            reference = (self.floor_references if floor else self.references)[0]
            curve = size_curve(features["features"], reference, curve_sizes(len(images)), seed)
        with atomic_path(features_path) as tmp:
            save_file({k: v.contiguous() for k, v in features.items() if k != "images"}, tmp)
        write_text(score_path, json.dumps(plain({"score": {k: v for k, v in score.items() if k != "samples"},
                                                 "curve": curve})))
        return features, score, curve

    def score(self, images, meta=None, seed=0, features=None, floor=False, labels=None):
        """The scorecard of one image set; floor=True scores against the split's odd-numbered half (the floor's
        images come from its even-numbered half); labels (N,), the class each image was asked to be, add the
        conditional scores."""
        gen = features or self.features(images)
        refs = self.floor_references if floor else self.references
        metrics = space_metrics(gen["features"], refs[0], seed)
        if "second" in gen:
            metrics["fid_second"] = estimate(*fid_bootstrap(gen["second"], refs[1], seed), len(images))
        metrics.update(class_scores(gen["logits"], seed))
        metrics.update(memorisation(images, self.train_images, self.memory["test_nn"], self.memory["train_nn"],
                                    self.memory["test_authenticity"]))
        if labels is not None:
            classes = len(self.class_references())
            if len(labels) != len(images) or (len(labels) and not 0 <= int(labels.min()) <= int(labels.max()) <= classes):
                raise DiffkitError(f"class labels must be one per image in 0..{classes} ({classes}: no class)")
            metrics.update(conditional_scores(gen["logits"], gen["features"], labels, self.class_references()))
        n_ref = len(refs[0]["features"])
        what = f"the odd-numbered half of {self.dataset} {self.split}" if floor else f"{self.dataset} {self.split}"
        return {
            "metrics": metrics,
            "n": len(images),
            "reference": {"dataset": self.dataset, "split": self.split, "n": n_ref, "what": what},
            "spaces": [describe_space(s) for s in self.spaces],
            "classifier": describe_space(self.classifier),
            "samples": meta or {},
        }


def space_caption(result):
    spaces = result["spaces"]
    second = f"; second space {spaces[1]['version']}" if len(spaces) > 1 else ""
    return f"features {spaces[0]['version']} ({spaces[0]['name']}){second}"


def scorecard_table(result, title="scorecard"):
    samples = result["samples"]
    ref = result["reference"]
    caption = (f"N = {result['n']} vs {ref['what']} (N = {ref['n']}); sampler {samples.get('sampler', 'not recorded')}, "
               f"NFE {samples.get('nfe', 'not recorded')}; {space_caption(result)}; class metrics "
               f"{result['classifier']['version']}; ± is one standard error/deviation")
    table = Table("metric", "value ± uncertainty", "better", title=title, caption=caption)
    for key, label, higher in METRICS:
        if key in result["metrics"]:
            better = {True: "higher", False: "lower"}.get(higher, higher)
            table.add_row(label, str(result["metrics"][key]), better)
    table.add_row("class histogram", " ".join(map(str, result["metrics"]["class_histogram"])), "flat")
    worst = result["metrics"].get("class_fid_worst")
    if worst:
        table.add_row("worst class", f"{worst['class']} (FID {worst['fid']:.4g})", "")
    return table


def score_samples(samples, reference="test", dataset=None, n=None, seed=0, data_root=None, device="auto",
                  features=DEFAULT_FEATURES, value_range=None, console=None):
    """`diffkit.evaluate`'s body: samples from anywhere (a Samples, an array or tensor, a path) scored like
    the command line scores them, refusing what it refuses."""
    import numpy as np

    from diffkit.samples import Samples
    from diffkit_eval.inputs import parse_range, read_images, to_pixels

    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 1_000_000):
        raise DiffkitError(f"n must be a positive integer up to 1,000,000, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise DiffkitError(f"seed must be an integer in 0..{2**32 - 1}, got {seed!r}")
    if reference not in ("test", "train"):
        raise DiffkitError(f"unknown reference split {reference!r}; choose test or train")
    value_range = parse_range(value_range)
    meta, labels = {}, None
    if isinstance(samples, Samples):
        images, meta, labels = samples.images, samples.meta, samples.labels
    elif isinstance(samples, (str, Path)):
        images, meta, labels = read_images(samples, n, value_range)
    elif isinstance(samples, (torch.Tensor, np.ndarray)):
        array = samples.detach().cpu().numpy() if isinstance(samples, torch.Tensor) else samples
        images = to_pixels(array, "the images given", value_range)
    else:
        raise DiffkitError(f"diffkit.evaluate takes a Samples, an array or tensor of images, or a path; got "
                           f"{type(samples).__name__}")
    if n is not None:
        if n > len(images):
            raise DiffkitError(f"n = {n} exceeds the {len(images)} images given")
        images = images[:n]
        labels = None if labels is None else labels[:n]
    dataset = dataset or meta.get("config", {}).get("dataset", "mnist")
    return Evaluator(dataset, reference, data_root, console, device, features).score(images, meta, seed, labels=labels)
