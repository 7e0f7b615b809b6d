import json
from pathlib import Path

import numpy as np
import pytest
import torch

from diffkit.data import load_images, to_model_range, to_uint8
from diffkit_cold.degradations import Blur, BlurOptions
from diffkit_eval.evaluate import Evaluator

from conftest import invoke


@pytest.fixture(scope="module")
def evaluator():
    return Evaluator("mnist", "test")


@pytest.fixture(scope="module")
def test_images():
    return load_images("mnist", "test")


def score(evaluator, images):
    return {k: v["value"] if isinstance(v, dict) else v for k, v in evaluator.score(images)["metrics"].items()}


def test_classifier_is_accurate_and_named_after_its_weights(evaluator):
    info = evaluator.extractor.info
    assert info["test_accuracy"] >= 0.98
    assert evaluator.extractor.name == f"diffkit-mnist-{info['weights_sha256'][:12]}"
    import torch_fidelity.registry as registry
    assert evaluator.extractor.name in registry.FEATURE_EXTRACTORS_REGISTRY


def test_test_set_against_itself_is_perfect(evaluator, test_images):
    s = score(evaluator, test_images)
    assert abs(s["fid"]) < 1e-3
    assert s["precision"] == 1 and s["recall"] == 1 and s["coverage"] == 1
    assert s["nn_distance_ratio"] == pytest.approx(1.0)


def test_train_subset_is_far_closer_than_noise(evaluator):
    train = score(evaluator, load_images("mnist", "train")[:2000])
    noise = score(evaluator, torch.randint(0, 256, (2000, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)))
    assert train["fid"] < 15 and noise["fid"] > 10 * train["fid"]
    assert train["density"] > 0.5 and noise["coverage"] < 0.05
    assert train["class_entropy"] > 2.2  # ln 10 = 2.30: all digits present


def test_blur_strength_makes_every_score_worse(evaluator):
    """Blurred *training* digits (independent of the test reference) against the test split."""
    x0 = to_model_range(load_images("mnist", "train")[:2000])
    scores = []
    for sigma in (0.5, 1.0, 1.5, 2.0):
        blur = Blur(BlurOptions(T=1, sigma=sigma, kernel_size=9))
        scores.append(score(evaluator, to_uint8(blur.degrade(x0, torch.ones(2000, dtype=torch.long)))))
    for key, direction in [("fid", 1), ("precision", -1), ("recall", -1), ("density", -1), ("coverage", -1)]:
        values = [s[key] for s in scores]
        assert all(direction * (b - a) > 0 for a, b in zip(values, values[1:])), (key, values)


def test_precision_and_recall_match_torch_fidelity():
    from torch_fidelity.metric_prc import prc_features_to_metric

    from diffkit_eval.metrics import PR_K, DC_K, kth_radius, neighbourhood_metrics

    g = torch.Generator().manual_seed(0)
    gen, ref = torch.randn(300, 8, generator=g), torch.randn(400, 8, generator=g) * 1.3
    ours = neighbourhood_metrics(gen, ref, kth_radius(ref, PR_K), kth_radius(ref, DC_K))
    theirs = prc_features_to_metric(gen, ref, prc_neighborhood=PR_K, prc_batch_size=10000, save_cpu_ram=False, verbose=False)
    assert ours["precision"]["value"] == pytest.approx(theirs["precision"], abs=1e-6)
    assert ours["recall"]["value"] == pytest.approx(theirs["recall"], abs=1e-6)


def test_a_collapsed_set_has_low_recall_entropy_and_coverage(evaluator, test_images):
    collapsed = test_images[:1].repeat(2000, 1, 1, 1)
    s = score(evaluator, collapsed)
    assert s["recall"] < 0.05 and s["coverage"] < 0.05
    assert s["class_entropy"] < 0.1 and s["class_kl_uniform"] > 2.2
    assert max(s["class_histogram"]) == 2000


def test_every_figure_carries_n_and_an_uncertainty(evaluator, test_images):
    metrics = evaluator.score(test_images[:500])["metrics"]
    for key, entry in metrics.items():
        if isinstance(entry, dict) and "value" in entry:
            assert entry["n"] == 500 and entry["std"] >= 0, key


def write_npz(path, **arrays):
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("arrays,message", [
    ({"pictures": np.zeros((20, 28, 28), np.uint8)}, "has no 'images' array"),
    ({"images": np.zeros((20, 32, 32), np.uint8)}, "images must be N×28×28"),
    ({"images": np.full((20, 28, 28), 300, np.int64)}, "image values must be in 0..255"),
    ({"images": np.full((20, 28, 28), -0.5, np.float32)}, "convert [-1, 1] floats"),
    ({"images": np.zeros((3, 28, 28), np.uint8)}, "3 samples are too few"),
    ({"images": np.zeros((20, 28, 28), np.uint8), "meta": np.array("not json")}, "'meta' array is not the JSON"),
])
def test_evaluate_rejects_bad_sample_files(runner, tmp_path, arrays, message):
    result = invoke(runner, "evaluate", write_npz(tmp_path / "s.npz", **arrays))
    assert result.exit_code == 1 and message in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1


def test_evaluate_cli_writes_json(runner, tmp_path, test_images):
    path = write_npz(tmp_path / "s.npz", images=test_images[:200, 0].numpy())
    assert invoke(runner, "evaluate", path, "--ref", "valid").exit_code == 1
    result = invoke(runner, "evaluate", path, "-n", 150, "--json", tmp_path / "m.json")
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "m.json").read_text())
    assert record["n"] == 150 and record["reference"] == {"dataset": "mnist", "split": "test", "n": 10000}
    assert record["metrics"]["fid"]["std"] > 0


TINY_CONFIG = """
[compare]
samples = 40
seed = 1

[[models]]
name = "ddpm"
degradation = "gaussian"
network = "cnn"
steps = 3
batch_size = 8
degradation_options = { T = 10 }
network_options = { hidden = [4, 4], time_features = 8 }
samplers = [{ name = "ddim", steps = [2, 5] }]

[[models]]
name = "blur"
degradation = "blur"
network = "cnn"
steps = 3
batch_size = 8
degradation_options = { T = 4 }
network_options = { hidden = [4, 4], time_features = 8 }
samplers = [{ name = "cold" }, { name = "direct" }]
"""


def test_compare_writes_every_file_with_one_row_per_pair(runner, tmp_path):
    config = tmp_path / "tiny.toml"
    config.write_text(TINY_CONFIG)
    out = tmp_path / "report"
    result = invoke(runner, "compare", config, "--out", out)
    assert result.exit_code == 0, result.output
    for name in ["report.html", "report.md", "metrics.json", "metrics.csv", "figures/loss.png",
                 "figures/class-histograms.png", "figures/metrics-vs-steps.png",
                 "figures/grid-ddpm__ddim-2.png", "figures/best-worst-blur__direct-1.png"]:
        assert (out / name).stat().st_size > 0, name
    rows = json.loads((out / "metrics.json").read_text())["rows"]
    assert [(r["model"], r["sampler"], r["steps"]) for r in rows] == [
        ("ddpm", "ddim", 2), ("ddpm", "ddim", 5), ("blur", "cold", 4), ("blur", "direct", 1)]
    assert all(r["n"] == 40 and r["training_images"] == 24 for r in rows)
    assert len((out / "metrics.csv").read_text().strip().splitlines()) == 5
    assert len(json.loads((out / "metrics.json").read_text())["fid_matrix"]) == 4
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "within" in html
    runs = {Path(r["run"]).name: r for r in json.loads(invoke(runner, "runs", out, "--json").output)}
    assert set(runs) == {"ddpm", "blur"} and runs["ddpm"]["step"] == 3
    assert runs["blur"]["best_fid"] == min(r["fid"] for r in rows if r["model"] == "blur")
    again = invoke(runner, "compare", config, "--out", out)  # everything is reused, nothing retrained
    assert again.exit_code == 0 and "reusing" in again.output and "training ddpm" not in again.output


def test_evaluate_samples_a_run_directory_and_reuses_cached_reference(runner, tmp_path):
    from diffkit_eval.classifier import cache_dir

    run = tmp_path / "run"
    trained = invoke(runner, "train", "-d", "gaussian", "--network", "cnn", "-o", "T=10", "-o", "hidden=4,4",
                     "-o", "time_features=8", "--steps", 2, "--batch-size", 8, "--out", run)
    assert trained.exit_code == 0, trained.output
    reference = next((cache_dir() / "references").glob("diffkit-mnist-*-test.safetensors"))
    before = reference.stat().st_mtime_ns
    result = invoke(runner, "evaluate", run, "-n", 12, "--steps", 3, "--json", tmp_path / "m.json")
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "m.json").read_text())
    assert record["n"] == 12 and record["samples"]["nfe"] == 3 and record["samples"]["run_dir"] == str(run)
    assert reference.stat().st_mtime_ns == before  # reference features were read, not recomputed
