"""Scores anyone can reproduce: shipped feature spaces, the committed scorecard, images from anywhere,
feature spaces as plugins, and a compare report with imported sample sets."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import diffkit
from diffkit import hookimpl
from diffkit.data import load_images
from diffkit.errors import DiffkitError
from diffkit.feature_space import FeatureSpace

from conftest import ROOT, invoke

DATA = Path(__file__).parent / "data"
CHECKED = ("fid", "kid", "precision", "recall", "coverage")


@pytest.fixture(scope="module")
def test_images():
    return load_images("mnist", "test")


def test_the_committed_samples_score_as_committed_with_one_and_two_threads():
    """What a fresh clone on any machine must print for tests/data/samples.npz: FID, KID, precision, recall and
    coverage within 1e-4 of tests/data/expected-scorecard.json, whatever the thread count."""
    expected = json.loads((DATA / "expected-scorecard.json").read_text())
    assert [s["version"] for s in expected["spaces"]] == ["diffkit-mnist-v1", "diffkit-mnist-ae-v1"]
    script = (f"import json, sys, torch; torch.set_num_threads(int(sys.argv[1])); import diffkit; "
              f"s = diffkit.evaluate({str(DATA / 'samples.npz')!r}, device='cpu'); "
              f"print(json.dumps({{k: s['metrics'][k].value for k in {CHECKED!r}}}))")
    for threads in (1, 2):
        out = subprocess.run([sys.executable, "-c", script, str(threads)], capture_output=True, text=True,
                             check=True).stdout
        scores = json.loads(out.strip().splitlines()[-1])
        for key in CHECKED:
            assert scores[key] == pytest.approx(expected["metrics"][key]["value"], rel=1e-4), (threads, key)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_committed_samples_score_the_same_on_a_gpu():
    """The tolerance across devices that docs/benchmarks.md states: the committed scorecard on CUDA (float32, TF32
    off) within 1e-3 relative for FID and KID, and within 2 samples in 1,000 for the k-NN rates, whose borderline
    samples may fall either side of a radius."""
    expected = json.loads((DATA / "expected-scorecard.json").read_text())["metrics"]
    scores = diffkit.evaluate(DATA / "samples.npz", device="cuda")["metrics"]
    for key in ("fid", "kid"):
        assert scores[key].value == pytest.approx(expected[key]["value"], rel=1e-3), key
    for key in ("precision", "recall", "coverage"):
        assert scores[key].value == pytest.approx(expected[key]["value"], abs=0.002), key


def save_png_folder(folder, images, rgb=False):
    from PIL import Image

    folder.mkdir()
    for i, image in enumerate(images[:, 0].numpy()):
        Image.fromarray(np.stack([image] * 3, axis=-1) if rgb else image).save(folder / f"{i:04d}.png")
    return folder


def test_a_reference_cache_rewritten_in_place_while_in_use_does_not_crash(tmp_path):
    """A cache file mapped into memory and rewritten in place (another process repairing it, `cp` over it) would
    kill its reader with SIGBUS; diffkit reads caches into memory, so the scorecard comes out as committed."""
    script = "\n".join([
        "import pathlib, sys",
        "from diffkit.samples import load_samples",
        "from diffkit_eval.evaluate import Evaluator",
        "Evaluator(device='cpu')  # computes the reference caches and writes them",
        "evaluator = Evaluator(device='cpu')  # reads them",
        "for cache in pathlib.Path(sys.argv[1]).rglob('*.safetensors'): cache.write_bytes(b'x')",
        "samples = load_samples(sys.argv[2])",
        "print(evaluator.score(samples.images, samples.meta, 0)['metrics']['fid'].value)"])
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path), str(DATA / "samples.npz")],
                          capture_output=True, text=True, env={**os.environ, "DIFFKIT_CACHE": str(tmp_path)})
    assert done.returncode == 0, done.stderr[-500:]
    expected = json.loads((DATA / "expected-scorecard.json").read_text())["metrics"]["fid"]["value"]
    assert float(done.stdout.split()[-1]) == pytest.approx(expected, rel=1e-4)


def test_a_png_folder_and_float_arrays_score_exactly_like_uint8_samples(runner, tmp_path, test_images):
    """Another toolkit's output: grey PNGs, RGB PNGs with equal channels (torchvision's save_image), floats in
    [-1, 1] shaped N×28×28×1, floats in [0, 1] with a declared range: all the same images, all the same FID."""
    images = test_images[:60]
    np.savez(tmp_path / "u8.npz", images=images[:, 0].numpy())
    np.save(tmp_path / "signed.npy", images.permute(0, 2, 3, 1).float().numpy() / 127.5 - 1)
    np.savez(tmp_path / "unit.npz", x=images.float().numpy() / 255)
    sources = [(tmp_path / "u8.npz", []), (save_png_folder(tmp_path / "grey", images), []),
               (save_png_folder(tmp_path / "rgb", images, rgb=True), []), (tmp_path / "signed.npy", []),
               (tmp_path / "unit.npz", ["--range", "0,1"])]
    fids = []
    for source, extra in sources:
        result = invoke(runner, "evaluate", source, "--features", "classifier", "--json", tmp_path / "s.json", *extra)
        assert result.exit_code == 0, (source, result.output)
        fids.append(json.loads((tmp_path / "s.json").read_text())["metrics"]["fid"]["value"])
    assert fids == [fids[0]] * len(fids)


def test_a_colour_png_folder_is_refused_in_a_grey_space(runner, tmp_path, test_images):
    from PIL import Image

    folder = tmp_path / "colour"
    folder.mkdir()
    for i in range(12):
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (28, 28, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    result = invoke(runner, "evaluate", folder)
    assert result.exit_code == 1 and "RGB set given to a grey-scale space" in result.output


def test_the_api_refuses_floats_it_cannot_place_and_scores_them_with_a_range(test_images):
    with pytest.raises(DiffkitError, match="could be in more than one range"):
        diffkit.evaluate(torch.rand(12, 1, 28, 28))
    with pytest.raises(DiffkitError, match="takes a Samples, an array or tensor"):
        diffkit.evaluate([1, 2, 3])
    images = test_images[:20]
    as_pixels = diffkit.evaluate(images, features="classifier")["metrics"]["fid"].value
    as_floats = diffkit.evaluate(images.float() / 255, value_range="0,1", features="classifier")["metrics"]["fid"].value
    assert as_floats == as_pixels


class PooledPixels(FeatureSpace):
    """A stand-in extractor: 7×7 average-pooled pixels, 49-d."""

    description = "test stand-in"

    @property
    def version(self):
        return "pooled-pixels-v0"

    def embed(self, images):
        return {"features": torch.nn.functional.avg_pool2d(images.float(), 4).flatten(1)}


class StandIn:
    @staticmethod
    @hookimpl
    def register_feature_spaces(register):
        register(PooledPixels, name="pooled")


def test_a_feature_space_plugin_scores_and_names_itself_in_the_scorecard(runner, register_plugin, tmp_path, test_images):
    register_plugin(StandIn, "stand-in")
    listed = invoke(runner, "list", "feature_spaces", "--json")
    assert {"classifier", "autoencoder", "inception-v3", "pooled"} <= {c["name"] for c in json.loads(listed.output)}
    np.savez(tmp_path / "s.npz", images=test_images[:30, 0].numpy())
    result = invoke(runner, "evaluate", tmp_path / "s.npz", "--features", "pooled,classifier", "--json", tmp_path / "m.json")
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "m.json").read_text())
    assert [s["version"] for s in record["spaces"]] == ["pooled-pixels-v0", "diffkit-mnist-v1"]
    assert "pooled-pixels-v0" in result.output and record["classifier"]["version"] == "diffkit-mnist-v1"
    assert record["metrics"]["fid"]["value"] > 0 and "fid_second" in record["metrics"]


def test_inception_without_weights_or_internet_is_one_line(runner, tmp_path, monkeypatch, test_images):
    import torch_fidelity.feature_extractor_inceptionv3 as inception

    def offline(*args, **kwargs):
        raise OSError("<urlopen error [Errno -3] Temporary failure in name resolution>")

    monkeypatch.setattr(inception, "load_state_dict_from_url", offline)
    np.savez(tmp_path / "s.npz", images=test_images[:20, 0].numpy())
    result = invoke(runner, "evaluate", tmp_path / "s.npz", "--features", "inception-v3")
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1
    assert "--space-option inception-v3.weights=PATH" in result.output


def test_inception_reads_a_local_weights_file(tmp_path, monkeypatch):
    """The space with weights from a file (random weights of the right shapes here: no hub is reachable)."""
    import torch_fidelity.feature_extractor_inceptionv3 as inception

    from diffkit_eval.evaluate import build_space
    from diffkit_eval.features import extract

    monkeypatch.setattr(inception, "load_state_dict_from_url", lambda *a, **k: None)
    monkeypatch.setattr(inception.FeatureExtractorInceptionV3, "load_state_dict", lambda self, state: None)
    shapes = inception.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"]).state_dict()
    monkeypatch.undo()
    path = tmp_path / "inception.pth"
    fake = {k: torch.ones(v.shape) if k.endswith("running_var") else torch.randn(v.shape) * 0.01
            if v.is_floating_point() else v for k, v in shapes.items()}
    torch.save(fake, path)
    space = build_space("inception-v3", "mnist", {"weights": str(path)})
    features = extract(space, torch.randint(0, 256, (3, 1, 28, 28), dtype=torch.uint8))["features"]
    assert features.shape == (3, 2048) and torch.isfinite(features).all()
    assert space.version == "inception-v3-compat-2015-12-05"


IMPORTED = """
[compare]
samples = 60
features = ["classifier", "autoencoder"]

[[samples]]
name = "real"
path = "real.npz"

[[samples]]
name = "blurry"
path = "blurry"
"""


def test_compare_puts_imported_sets_beside_each_other_with_verdicts(runner, tmp_path, test_images):
    import torch.nn.functional as F

    np.savez(tmp_path / "real.npz", images=load_images("mnist", "train")[:60, 0].numpy())
    blurry = F.avg_pool2d(test_images[:60].float(), 3, 1, 1).round().to(torch.uint8)
    save_png_folder(tmp_path / "blurry", blurry)
    (tmp_path / "imported.toml").write_text(IMPORTED)
    result = invoke(runner, "compare", tmp_path / "imported.toml", "--out", tmp_path / "report")
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "report" / "metrics.json").read_text())
    rows = {r["model"]: r for r in record["rows"]}
    assert rows["real"]["label"] == "real (imported)" and rows["real"]["n"] == 60 and rows["real"]["nfe"] is None
    assert rows["real"]["fid"] < rows["blurry"]["fid"] and rows["blurry"]["verdict_vs_best"] == "worse"
    assert [s["version"] for s in record["spaces"]] == ["diffkit-mnist-v1", "diffkit-mnist-ae-v1"]
    report = (tmp_path / "report" / "report.md").read_text()
    assert "real (imported)" in report and "diffkit-mnist-v1" in report
    (tmp_path / "bad.toml").write_text(IMPORTED.replace('path = "blurry"', 'path = "nowhere"'))
    bad = invoke(runner, "compare", tmp_path / "bad.toml", "--out", tmp_path / "other")
    assert bad.exit_code == 1 and "[[samples]] 'blurry'" in bad.output and "does not exist" in bad.output


def test_validate_metrics_finds_every_metric_moving_the_right_way(runner, tmp_path):
    result = invoke(runner, "validate-metrics", "-n", 300, "--degradations", "blur,mask", "--features", "classifier",
                    "--json", tmp_path / "v.json")
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "v.json").read_text())
    assert record["failures"] == [] and [c["name"] for c in record["checks"]] == ["blur", "mask", "collapsed", "copy"]
    rows = record["spaces"]["diffkit-mnist-v1"]
    assert [r["set"] for r in rows][:2] == ["clean (real test digits)", "blur t = 1"]
    assert rows[0]["fid"]["value"] < rows[1]["fid"]["value"] and rows[0]["recall"]["value"] > rows[-2]["recall"]["value"]


def test_core_never_imports_the_harness():
    """diffkit's own modules reach the harness only through the plugin hooks."""
    offenders = [p.name for p in (ROOT / "diffkit").glob("*.py")
                 if "import diffkit_eval" in p.read_text() or "from diffkit_eval" in p.read_text()]
    assert offenders == []


def test_an_npz_bomb_is_one_line_and_a_plain_npy_under_an_npz_name_is_read(runner, tmp_path, test_images):
    import io
    import zipfile

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False, "shape": (20_000_000, 28, 28)})
    with zipfile.ZipFile(tmp_path / "bomb.npz", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("images.npy", header.getvalue() + bytes(4096))
    result = invoke(runner, "evaluate", tmp_path / "bomb.npz", "-n", 10)
    assert result.exit_code == 1 and "claims 20,000,000" in result.output and "more than the" in result.output
    np.save(tmp_path / "plain.npy", test_images[:30, 0].numpy())
    (tmp_path / "plain.npy").rename(tmp_path / "plain.npz")
    result = invoke(runner, "evaluate", tmp_path / "plain.npz", "--features", "classifier")
    assert result.exit_code == 0, result.output


def test_n_reads_only_the_first_images_of_a_large_file(tmp_path):
    from diffkit_eval.inputs import read_images

    np.savez_compressed(tmp_path / "big.npz", images=np.zeros((100_000, 28, 28), np.uint8))
    images, _, _ = read_images(tmp_path / "big.npz", 10)
    assert images.shape == (10, 1, 28, 28)


def test_retrained_spaces_carry_their_own_name(runner, tmp_path, monkeypatch, test_images):
    """`diffkit features train` (one epoch here) writes spaces named after their weights; scores in them say so."""
    import diffkit_eval.autoencoder
    import diffkit_eval.classifier

    monkeypatch.setattr(diffkit_eval.classifier, "EPOCHS", 1)
    monkeypatch.setattr(diffkit_eval.autoencoder, "EPOCHS", 1)
    result = invoke(runner, "features", "train", "--dataset", "mnist", "--out", tmp_path / "spaces", "--device", "cpu")
    assert result.exit_code == 0, result.output
    files = sorted((tmp_path / "spaces").glob("*.safetensors"), key=lambda f: "-ae-" in f.name)
    assert [f.name.split("-local-")[0] for f in files] == ["mnist", "mnist-ae"]
    np.savez(tmp_path / "s.npz", images=test_images[:20, 0].numpy())
    scored = invoke(runner, "evaluate", tmp_path / "s.npz", "--features", "classifier", "--space-option",
                    f"classifier.weights={files[0]}", "--json", tmp_path / "m.json")
    assert scored.exit_code == 0, scored.output
    assert json.loads((tmp_path / "m.json").read_text())["spaces"][0]["version"] == files[0].stem
    wrong = invoke(runner, "evaluate", tmp_path / "s.npz", "--features", "classifier", "--space-option",
                   f"classifier.weights={files[1]}")
    assert wrong.exit_code == 1 and "holds a autoencoder space, not a classifier" in wrong.output
