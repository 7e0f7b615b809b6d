import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch

from click.testing import CliRunner

from diffkit.data import load_images, to_model_range, to_uint8
from diffkit.samples import load_samples
from diffkit_cold.degradations import Blur, BlurOptions
from diffkit_eval.evaluate import Evaluator
from diffkit_eval.metrics import Estimate

from conftest import figure_keeper, invoke


@pytest.fixture(scope="module")
def evaluator():
    return Evaluator("mnist", "test")


@pytest.fixture(scope="module")
def test_images():
    return load_images("mnist", "test")


def score(evaluator, images):
    return {k: v.value if isinstance(v, Estimate) else v for k, v in evaluator.score(images)["metrics"].items()}


def test_the_shipped_spaces_are_named_by_version_and_never_trained(evaluator, monkeypatch):
    import torch_fidelity.registry as registry

    import diffkit_eval.autoencoder
    import diffkit_eval.classifier

    classifier, autoencoder = evaluator.spaces
    assert (classifier.version, autoencoder.version) == ("diffkit-mnist-v1", "diffkit-mnist-ae-v1")
    assert classifier.info["test_accuracy"] >= 0.98 and classifier.info["train_images"] == 10_000
    assert classifier.version in registry.FEATURE_EXTRACTORS_REGISTRY  # torch-fidelity measures in it too
    for module in (diffkit_eval.classifier, diffkit_eval.autoencoder):
        monkeypatch.setattr(module, "fit", lambda *a, **k: pytest.fail("a shipped space was trained"))
    assert Evaluator("fashion-mnist", "test").spaces[0].version == "diffkit-fashion-mnist-v1"


def test_a_changed_weights_file_is_refused(tmp_path, monkeypatch):
    import diffkit_eval.spaces as spaces
    from diffkit.errors import DiffkitError

    damaged = tmp_path / "diffkit-mnist-v1.safetensors"
    data = bytearray((spaces.WEIGHTS / damaged.name).read_bytes())
    data[-1] ^= 1
    damaged.write_bytes(bytes(data))
    monkeypatch.setattr(spaces, "WEIGHTS", tmp_path)
    with pytest.raises(DiffkitError, match="does not match the sha256 pinned for it"):
        spaces.load_space("classifier", "mnist")


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
    assert ours["precision"].value == pytest.approx(theirs["precision"], abs=1e-6)
    assert ours["recall"].value == pytest.approx(theirs["recall"], abs=1e-6)


def test_a_collapsed_set_has_low_recall_entropy_and_coverage(evaluator, test_images):
    collapsed = test_images[:1].repeat(2000, 1, 1, 1)
    s = score(evaluator, collapsed)
    assert s["recall"] < 0.05 and s["coverage"] < 0.05
    assert s["class_entropy"] < 0.1 and s["class_kl_uniform"] > 2.2
    assert max(s["class_histogram"]) == 2000


def test_every_figure_carries_n_and_an_uncertainty(evaluator, test_images):
    metrics = evaluator.score(test_images[:500])["metrics"]
    for key, entry in metrics.items():
        if isinstance(entry, Estimate):
            assert entry.n == 500 and entry.std >= 0, key


def write_npz(path, **arrays):
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("arrays,message", [
    ({"pictures": np.zeros((20, 28, 28), np.uint8), "labels": np.zeros(20)}, "has no 'images' array and more than one"),
    ({"images": np.zeros((20, 32, 32), np.uint8)}, "takes 28×28 images; these are 32×32"),
    ({"images": np.zeros((20, 28, 28, 3), np.uint8) + np.arange(3, dtype=np.uint8)}, "RGB set given to a grey-scale"),
    ({"images": np.full((20, 28, 28), 300, np.int64)}, "integer images must be pixels in 0..255"),
    ({"images": np.full((20, 28, 28), 0.5, np.float32)}, "say which with --range 0,1, 0,255 or -1,1"),
    ({"images": np.full((20, 28, 28), np.nan, np.float32)}, "NaN or infinite"),
    ({"images": np.zeros((20, 5), np.uint8)}, "images must be N×H×W, N×1×H×W or N×H×W×1"),
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
    assert record["n"] == 150 and record["reference"] == {"dataset": "mnist", "split": "test", "n": 10000,
                                                          "what": "mnist test"}
    assert [s["version"] for s in record["spaces"]] == ["diffkit-mnist-v1", "diffkit-mnist-ae-v1"]
    assert record["metrics"]["fid"]["std"] > 0


TINY_CONFIG = """
[compare]
samples = 40
seed = 1

[[models]]
name = "ddpm"
seeds = [0, 1]
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


class Links(HTMLParser):
    """Every <img src> and <a href> of a page."""

    def __init__(self):
        super().__init__()
        self.targets = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.targets.append(attrs["src"])
        elif tag == "a" and "href" in attrs:
            self.targets.append(attrs["href"])


def links_of(page):
    parser = Links()
    parser.feed(page.read_text())
    return parser.targets


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    """The tiny comparison, run once for the tests that read its report; the matplotlib figures it draws are
    kept in DRAWN (by file name), so tests can read back what each one plots."""
    from diffkit_eval import figures

    folder = tmp_path_factory.mktemp("compare")
    config = folder / "tiny.toml"
    config.write_text(TINY_CONFIG)
    out = folder / "report"
    keep = figure_keeper({"metrics-vs-steps.png", "class-histograms.png", "sample-size.png", "loss.png"}, DRAWN)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(figures, "figure", keep)
        result = invoke(CliRunner(), "compare", config, "--out", out)
    assert result.exit_code == 0, result.output
    return config, out


DRAWN = {}


def test_the_figures_plot_the_reported_numbers(compared):
    """What the figures draw, read back from matplotlib, against metrics.json: not only that a PNG exists."""
    _, out = compared
    rows = {r["label"]: r for r in json.loads((out / "metrics.json").read_text())["rows"]}
    fid_axis = DRAWN["metrics-vs-steps.png"].axes[0]
    assert len(DRAWN["metrics-vs-steps.png"].axes) == 4 and "FID" in fid_axis.get_ylabel().upper()
    (errorbar,) = [c for c in fid_axis.containers if c.get_label() == "ddpm / ddim"]
    line = errorbar.lines[0]
    assert list(line.get_xdata()) == [2, 5]
    assert list(line.get_ydata()) == pytest.approx([rows["ddpm / ddim-2"]["fid"], rows["ddpm / ddim-5"]["fid"]])
    histograms = DRAWN["class-histograms.png"].axes
    assert [ax.get_title() for ax in histograms] == [label for label, r in rows.items() if not r["reference_row"]]
    for ax in histograms:
        assert [bar.get_height() for bar in ax.patches] == rows[ax.get_title()]["class_histogram"]
    fid_against_n = DRAWN["sample-size.png"].axes[0]
    assert len(fid_against_n.get_lines()) == len(rows)  # every pair and both references
    floor = next(ln for ln in fid_against_n.get_lines() if ln.get_label().startswith("floor"))
    assert floor.get_ydata()[-1] == pytest.approx(rows[floor.get_label()]["curve"]["40"]["fid"])
    assert {ln.get_label() for ln in DRAWN["loss.png"].axes[0].get_lines()} == {"ddpm", "ddpm-seed1", "blur"}


def test_compare_writes_every_file_with_one_row_per_pair(runner, compared):
    config, out = compared
    for name in ["report.html", "report.md", "metrics.json", "metrics.csv", "figures/loss.png",
                 "figures/class-histograms.png", "figures/metrics-vs-steps.png", "figures/sample-size.png",
                 "figures/grid-ddpm__ddim-2.png", "figures/best-worst-blur__direct-1.png",
                 "pairs/ddpm__ddim-2.html", "pairs/blur__cold-4.html", "samples/ddpm-seed1__ddim-5-path.png"]:
        assert (out / name).stat().st_size > 0, name
    record = json.loads((out / "metrics.json").read_text())
    rows = record["rows"]
    assert [(r["model"], r["sampler"], r["steps"]) for r in rows] == [
        ("ddpm", "ddim", 2), ("ddpm", "ddim", 5), ("blur", "cold", 4), ("blur", "direct", 1), ("floor", "-", 0),
        ("copy", "-", 0)]
    pairs = [r for r in rows if not r["reference_row"]]
    assert all(r["n"] == 40 and r["training_images"] == 24 for r in pairs)
    assert len((out / "metrics.csv").read_text().strip().splitlines()) == 7
    assert len(record["fid_matrix"]) == 6  # one per (pair, training seed): ddpm has two seeds
    html = (out / "report.html").read_text()
    assert "<table>" in html and "within" in html and "Kendall" in html
    runs = {Path(r["run"]).name: r for r in json.loads(invoke(runner, "runs", out, "--json").output)}
    assert set(runs) == {"ddpm", "ddpm-seed1", "blur"} and runs["ddpm"]["step"] == 3
    assert runs["blur"]["best_fid"] == min(r["fid"] for r in pairs if r["model"] == "blur")
    again = invoke(runner, "compare", config, "--out", out)  # everything is reused, nothing retrained
    assert again.exit_code == 0 and "reusing" in again.output and "training ddpm" not in again.output


def test_training_seeds_give_a_spread_and_a_verdict_over_seeds(compared):
    _, out = compared
    record = json.loads((out / "metrics.json").read_text())
    ddpm, blur = record["rows"][0], record["rows"][2]
    assert ddpm["seeds"] == [0, 1] and ddpm["runs"] == ["ddpm", "ddpm-seed1"] and len(ddpm["fid_seeds"]) == 2
    assert ddpm["fid"] == pytest.approx(np.mean(ddpm["fid_seeds"]))
    assert ddpm["fid_seed_std"] == pytest.approx(np.std(ddpm["fid_seeds"], ddof=1))
    assert blur["seeds"] == [0] and blur["fid_seed_std"] is None
    # the two seeds were trained apart: different weights, so different samples
    first, second = (load_samples(out / "samples" / f"{run}__ddim-2.npz").meta for run in ddpm["runs"])
    assert first["weights_sha256"] != second["weights_sha256"] and first["config"]["seed"] != second["config"]["seed"]
    verdicts = record["verdicts"]
    assert verdicts[0][0] is None and verdicts[0][1][2] == "Welch t over seeds"  # ddpm against ddpm: both seeded
    assert verdicts[0][2][2] == "z over samples"  # blur has one seed
    assert {v[0] for row in verdicts for v in row if v} <= {"better", "worse", "~"}


def test_reference_rows_show_the_floor_and_catch_the_copy(compared):
    _, out = compared
    rows = {r["model"]: r for r in json.loads((out / "metrics.json").read_text())["rows"]}
    floor, copy, pair = rows["floor"], rows["copy"], rows["blur"]
    assert floor["n"] == copy["n"] == 40
    assert copy["nn_distance_ratio"] < 0.2 and copy["authenticity"] == 0 and copy["near_copies"] == 1
    assert pair["nn_distance_ratio"] > 0.5 and pair["authenticity"] > 0.5
    assert floor["fid"] < pair["fid"] and pair["floor_ratio"] == pytest.approx(pair["fid"] / floor["fid"])
    assert sorted(int(n) for n in floor["curve"]) == [20, 40] and floor["fid_infinity"] is not None


def test_every_image_and_link_of_the_report_resolves_inside_its_folder(compared):
    _, out = compared
    pages = [out / "report.html", *sorted((out / "pairs").glob("*.html"))]
    assert len(pages) == 5
    for page in pages:
        targets = links_of(page)
        assert targets, page
        for target in targets:
            assert "://" not in target and not target.startswith("/"), (page, target)
            resolved = (page.parent / target).resolve()
            assert resolved.is_file() and out.resolve() in resolved.parents, (page, target)
    pair_page = (out / "pairs" / "ddpm__ddim-2.html").read_text()
    assert "weights_sha256" in pair_page and "training seed 1" in pair_page and "torch" in pair_page


def test_a_markdown_table_cell_may_hold_a_pipe():
    from diffkit_eval.pages import table
    from diffkit_eval.report import html_page

    page = html_page("\n".join(table(["a", "b"], [["x | y", "<b>raw</b>"]])), "t")
    assert page.count("<td>") == 2 and "x | y" in page and "&lt;b&gt;raw&lt;/b&gt;" in page


def test_samples_and_scores_are_recomputed_when_what_made_them_changes(runner, compared, tmp_path):
    config, out = compared
    report = tmp_path / "report"
    shutil.copytree(out, report)
    path = report / "samples" / "blur__cold-4.npz"
    key = load_samples(path).meta["cache_key"]
    scores = set((report / "cache").glob("*.json"))
    again = invoke(runner, "compare", config, "--out", report)
    assert again.exit_code == 0 and load_samples(path).meta["cache_key"] == key
    assert set((report / "cache").glob("*.json")) == scores  # nothing new was scored
    longer = tmp_path / "longer.toml"  # blur trains one step more: new weights, same file names
    longer.write_text(TINY_CONFIG.replace("steps = 3\nbatch_size = 8\ndegradation_options = { T = 4 }",
                                          "steps = 4\nbatch_size = 8\ndegradation_options = { T = 4 }"))
    result = invoke(runner, "compare", longer, "--out", report)
    assert result.exit_code == 0, result.output
    meta = load_samples(path).meta
    assert meta["training_step"] == 4 and meta["cache_key"] != key
    new_scores = set((report / "cache").glob("*.json")) - scores
    assert len(new_scores) == 2  # blur's two pairs, rescored; the DDPM's and the references are reused


def test_evaluate_samples_a_run_directory_and_reuses_cached_reference(runner, tmp_path):
    from diffkit_eval.reference import cache_dir

    run = tmp_path / "run"
    trained = invoke(runner, "train", "-d", "gaussian", "--network", "cnn", "-o", "T=10", "-o", "hidden=4,4",
                     "-o", "time_features=8", "--steps", 2, "--batch-size", 8, "--out", run)
    assert trained.exit_code == 0, trained.output
    reference = next((cache_dir() / "references").glob("diffkit-mnist-v1-mnist-test-*.safetensors"))
    before = reference.stat().st_mtime_ns
    result = invoke(runner, "evaluate", run, "-n", 12, "--steps", 3, "--json", tmp_path / "m.json")
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "m.json").read_text())
    assert record["n"] == 12 and record["samples"]["nfe"] == 3 and record["samples"]["run_dir"] == str(run)
    assert reference.stat().st_mtime_ns == before  # reference features were read, not recomputed


def test_vendi_score_counts_distinct_directions():
    from diffkit_eval.metrics import vendi_score

    same = torch.ones(100, 8)
    basis = torch.eye(8).repeat(25, 1)  # 8 orthogonal directions, equally often
    assert vendi_score(same).value == pytest.approx(1.0, abs=1e-6)
    assert vendi_score(basis).value == pytest.approx(8.0, rel=1e-6)


def test_a_flip_between_feature_spaces_says_where_its_difference_is_clear():
    from diffkit_eval.summary import rank_agreement

    def row(label, fid, fid_std, second, second_std):
        return {"label": label, "reference_row": False, "fid": fid, "fid_std": fid_std, "fid_second": second,
                "fid_second_std": second_std}

    a, b, c = row("a", 20, 1, 5.5, 0.5), row("b", 30, 1, 5.3, 0.3), row("c", 40, 1, 9.0, 0.3)
    agreement = rank_agreement([a, b, c])
    # a < b < c in the primary space; b < a < c in the second: one flip, clear in the primary space only
    assert agreement["flips"] == [{"pair": ["a", "b"], "clear_in": ["fid"]}]
    # tau counts only a-c and b-c, clear in both spaces and in the same order: 1 over 2 pairs (plain tau: 1/3)
    assert agreement["kendall_tau"] == 1.0 and agreement["clear_pairs"] == 2 and agreement["row_pairs"] == 3
    b["fid_second"] = 4.0  # 1.5 below a's 5.5 in the second space, more than 2 combined errors (1.17)
    agreement = rank_agreement([a, b, c])
    assert agreement["flips"] == [{"pair": ["a", "b"], "clear_in": ["fid", "fid_second"]}]
    assert agreement["kendall_tau"] == pytest.approx(1 / 3) and agreement["clear_pairs"] == 3
    noise = [row(str(i), 20 + i * 0.1, 1, 5 - i * 0.1, 1) for i in range(4)]  # reversed, but all within noise
    assert rank_agreement(noise)["kendall_tau"] is None and rank_agreement(noise)["clear_pairs"] == 0


def test_fid_infinity_is_the_intercept_in_one_over_n():
    from diffkit_eval.metrics import Estimate, fid_infinity

    curve = {n: {"fid": Estimate(3.0 + 2000 / n, 0.1, n)} for n in (500, 1000, 2000, 5000)}
    assert fid_infinity(curve).value == pytest.approx(3.0)
    assert fid_infinity(curve).std == pytest.approx(0.0, abs=1e-9)
    assert fid_infinity({500: curve[500]}) is None


def test_authenticity_catches_copies_and_passes_unseen_digits():
    from diffkit_eval.metrics import memorisation, nearest_training

    train, test = load_images("mnist", "train")[:2000], load_images("mnist", "test")[:500]
    train_nn = nearest_training(train, train, exclude_self=True)[0]
    test_nn = nearest_training(test, train)[0]
    copies = memorisation(train[:500], train, test_nn, train_nn, 0.5)
    unseen = memorisation(test, train, test_nn, train_nn, 0.5)
    assert copies["authenticity"].value == 0 and copies["nn_distance_ratio"].value == 0
    assert unseen["authenticity"].value > 0.4 and unseen["nn_distance_ratio"].value == pytest.approx(1.0)


def test_the_report_answers_first_in_a_real_browser(compared, tmp_path):
    """report.html in headless Chromium: the summary and its table are on the first screen, every image loads.
    Skipped where no Chromium is installed (CI installs Debian's); the HTML is parsed by the tests above."""
    _, out = compared
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no Chromium on this machine (`apt-get install chromium`); the report's HTML is checked above")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is a dev dependency")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu",
                                                                    "--disable-background-networking"])
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto((out / "report.html").resolve().as_uri())
        page.wait_for_load_state("load")
        summary = page.locator("h2", has_text="Summary").bounding_box()
        table_box = page.locator("table").first.bounding_box()
        assert summary["y"] < table_box["y"] < 800, (summary, table_box)
        assert "Best pair:" in page.locator("p").first.inner_text()
        broken = page.evaluate("Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0))"
                               ".map(i => i.getAttribute('src'))")
        assert page.evaluate("document.images.length") >= 4 and broken == []
        grids = page.locator(".grids figure")
        assert grids.count() == 4 and grids.first.bounding_box()["y"] < 800 * 2
        browser.close()


def test_the_report_says_who_is_best_and_gives_every_verdict_in_words(compared):
    _, out = compared
    md = (out / "report.md").read_text()
    assert md.index("## Summary") < md.index("## Scores") < md.index("## How to read these figures")
    record = json.loads((out / "metrics.json").read_text())
    pairs = [r for r in record["rows"] if not r["reference_row"]]
    best = min(pairs, key=lambda r: r["fid"])
    assert f"**Best pair: {best['label']}**" in md
    for row in pairs:
        if row is not best:
            words = f"{row['verdict_vs_best']} by" if row["verdict_vs_best"] != "~" else "~ (p"
            assert words in md, row["label"]
    assert "p = 0 " not in md and "p = 0," not in md


def test_a_p_value_below_float_resolution_reads_as_a_bound():
    from diffkit_eval.pages import p_text

    assert p_text(0.0) == "p < 1e-16" and p_text(3e-20) == "p < 1e-16" and p_text(0.0312) == "p = 0.031"


def test_a_corrupt_score_cache_entry_is_made_again_with_a_warning(runner, compared, tmp_path):
    config, out = compared
    report = tmp_path / "report"
    shutil.copytree(out, report)
    entry = sorted((report / "cache").glob("*.json"))[0]
    entry.write_text("{ not json")
    again = invoke(runner, "compare", config, "--out", report)
    assert again.exit_code == 0, again.output
    assert "is unreadable; scoring again" in " ".join(again.output.split())
    assert json.loads(entry.read_text())["score"]["n"] == 40


def test_verdicts_by_hand_welch_over_seeds_and_z_over_samples():
    """Welch's t-test on two small sets of seed FIDs and the z-test on per-sample standard errors, computed
    from their formulas and compared with what the report's verdict says."""
    import math

    from scipy import stats

    from diffkit_eval.summary import verdict

    a = {"fid": 20.0, "fid_std": 0.5, "fid_seeds": [19.0, 20.0, 21.0], "fid_seed_std": 1.0}
    b = {"fid": 26.0, "fid_std": 1.0, "fid_seeds": [24.0, 26.0, 28.0], "fid_seed_std": 2.0}
    # Welch: t = (20 − 26) / sqrt(1²/3 + 2²/3) = −4.648; Welch–Satterthwaite df = (5/3)² / ((1/3)²/2 + (4/3)²/2) = 2.941
    t = (20 - 26) / math.sqrt(1 / 3 + 4 / 3)
    df = (5 / 3) ** 2 / ((1 / 3) ** 2 / 2 + (4 / 3) ** 2 / 2)
    assert t == pytest.approx(-4.6476, abs=1e-4) and df == pytest.approx(2.9412, abs=1e-4)
    p_welch = 2 * stats.t.sf(abs(t), df)
    word, p, test = verdict(a, b)
    assert (word, test) == ("better", "Welch t over seeds") and p == pytest.approx(p_welch, rel=1e-9)
    assert p == pytest.approx(0.0196, abs=1e-4)
    # one seed each: z = (20 − 26) / hypot(0.5, 1.0) = −5.367, p = 2·Φ(−5.367) = 8.0e-8
    a1, b1 = {**a, "fid_seeds": [20.0], "fid_seed_std": None}, {**b, "fid_seeds": [26.0], "fid_seed_std": None}
    word, p, test = verdict(b1, a1)
    assert (word, test) == ("worse", "z over samples") and p == pytest.approx(2 * stats.norm.sf(6 / math.hypot(0.5, 1.0)))
    assert p == pytest.approx(8.0e-8, rel=0.02)
    close = {**a1, "fid": 25.0}  # z = 1 / 1.118 = 0.894: p = 0.371, not distinguishable at 0.05
    assert verdict(close, b1)[0] == "~" and verdict(close, b1)[1] == pytest.approx(0.3711, abs=1e-4)
