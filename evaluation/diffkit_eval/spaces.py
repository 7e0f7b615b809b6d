"""diffkit's own feature spaces: networks trained once, shipped in the package under a version name.

A score is only comparable with scores from the same extractor. So the classifier and the autoencoder
that every report measures in are not trained on the user's machine: their weights are files in this
package (`weights/NAME.safetensors`), each pinned here by the sha256 of the file and checked on every
load. The same samples then get the same number on every machine.

`train_space` made the shipped files (`python -m diffkit_eval.train_spaces`) and makes local spaces for
datasets without shipped weights (`diffkit features train`); a local space carries a name of its own
(`mnist-local-<hash>`), so its numbers are never mistaken for the shipped space's.
"""

import hashlib
import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_bytes, save_file

from diffkit.atomic import atomic_path
from diffkit.checkpoint import tensors_sha256
from diffkit.data import load_images, load_labels
from diffkit.errors import DiffkitError
from diffkit_eval import autoencoder, classifier

WEIGHTS = Path(__file__).parent / "weights"
KINDS = ("classifier", "autoencoder")

# version name -> sha256 of its .safetensors file; a changed file is refused, never scored with.
# Made by `python -m diffkit_eval.train_spaces --release v1` (MNIST: the 10,000-image training subset whose
# sha256 docs/benchmarks.md gives, test accuracy 98.56%, autoencoder test RMSE 0.068; Fashion-MNIST: the full
# 60,000, test accuracy 90.72%, RMSE 0.079).
SHIPPED = {
    "diffkit-mnist-v1": "2c916d475c0b2541c69730e9a59fa0ec069d321901ed2660f0ae172e7a6b2e66",
    "diffkit-mnist-ae-v1": "3c4ddf4878edc74956f0c23f27151dbf3286b902693280488b044e03b3a56c2e",
    "diffkit-fashion-mnist-v1": "33f1f81b5f36eb8ff7f7f75809574c131666aa8f8646ba5ceba40a57ecac1ad9",
    "diffkit-fashion-mnist-ae-v1": "acc2c09c8a3ced49c2c5de6fbb277c2bdafe4c14a904184acb511bdd92df6222",
}


def shipped_name(kind, dataset, release="v1"):
    return f"diffkit-{dataset}{'-ae' if kind == 'autoencoder' else ''}-{release}"


def data_hash(images, labels):
    return hashlib.sha256(images.numpy().tobytes() + labels.numpy().tobytes()).hexdigest()


def weights_hash(model):
    return tensors_sha256(model.state_dict())


def file_sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def build(kind):
    return {"classifier": classifier.Classifier, "autoencoder": autoencoder.Autoencoder}[kind]()


def read_space(path, kind, expected_sha256=None):
    """(model on the CPU, info with the file's "file_sha256") from a space's safetensors file, its hash checked
    when one is pinned: the bytes hashed are the bytes loaded."""
    try:
        data = Path(path).read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if expected_sha256 is not None and digest != expected_sha256:
            raise DiffkitError(f"{path} does not match the sha256 pinned for it: the file was changed or "
                               f"damaged; reinstall diffkit")
        tensors = load_bytes(data)
        header = json.loads(data[8:8 + int.from_bytes(data[:8], "little")])  # safetensors: length, JSON header
        info = json.loads(header.get("__metadata__", {}).get("info", "{}"))
        if info.get("kind") != kind:
            raise DiffkitError(f"{path} holds a {info.get('kind', 'unknown')} space, not a {kind}")
        model = build(kind)
        model.load_state_dict(tensors)
    except (OSError, SafetensorError, ValueError, RuntimeError) as exc:
        raise DiffkitError(f"cannot read feature space {path}: {exc}".splitlines()[0]) from None
    return model.eval(), {**info, "file_sha256": digest}


def load_space(kind, dataset, device="cpu", path=None):
    """(model on `device`, info with its "name"): the shipped space of `kind` for `dataset`, checked against its
    pinned hash, or the local one in `path` (made by `diffkit features train`, named after its own hash)."""
    if path:
        model, info = read_space(path, kind)
        return model.to(device), {**info, "name": info.get("name", Path(path).stem)}
    name = shipped_name(kind, dataset)
    if name not in SHIPPED:
        raise DiffkitError(f"no {kind} feature space ships for dataset {dataset!r}; train one with `diffkit features "
                           f"train --dataset {dataset} --out FOLDER` and pass --space-option {kind}.weights=FILE")
    model, info = read_space(WEIGHTS / f"{name}.safetensors", kind, SHIPPED[name])
    return model.to(device), {**info, "name": name}


def local_name(kind, dataset, info):
    """A retrained space's name: never a shipped one's, and different weights give a different name."""
    return f"{dataset}{'-ae' if kind == 'autoencoder' else ''}-local-{info['weights_sha256'][:12]}"


def train_space(kind, dataset, data_root=None, console=None, device="cpu"):
    """(model, info): the space of `kind` trained on the dataset's training split, with its test figure."""
    images, labels = load_images(dataset, "train", data_root), load_labels(dataset, "train", data_root)
    test = load_images(dataset, "test", data_root)
    info = {"kind": kind, "dataset": dataset, "train_images": len(images), "train_data_sha256": data_hash(images, labels)}
    if kind == "classifier":
        model = classifier.train_classifier(images, labels, console=console, device=device)
        info.update(architecture=classifier.ARCHITECTURE, epochs=classifier.EPOCHS, seed=0,
                    test_accuracy=classifier.accuracy(model, test, load_labels(dataset, "test", data_root)))
    else:
        model = autoencoder.train_autoencoder(images, console, device)
        info.update(architecture=autoencoder.ARCHITECTURE, epochs=autoencoder.EPOCHS, seed=autoencoder.SEED,
                    test_rmse=autoencoder.reconstruction_rmse(model, test))
    model = model.cpu().eval()
    return model, {**info, "weights_sha256": weights_hash(model), "torch": torch.__version__}


def save_space(path, model, info):
    with atomic_path(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, tmp,
                  metadata={"info": json.dumps(info, sort_keys=True)})
    return file_sha256(path)
