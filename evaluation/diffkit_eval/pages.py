"""The report's text, as Markdown: report.md (every pair and both reference rows) and one page per pair."""

import json

from diffkit_eval.evaluate import METRICS
from diffkit_eval.figures import sampler_cell
from diffkit_eval.summary import ALPHA, SIGMAS, standing


def cell(text):
    """Text that is safe inside a Markdown table cell."""
    return str(text).replace("|", "\\|")


def table(header, rows):
    return ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(cell(c) for c in r) + " |" for r in rows)]


def _num(x, digits=0):
    return "-" if x is None else f"{x:.{digits}f}"


def _g(x):
    return "-" if x is None else f"{x:.4g}"


def page_link(row, prefix=""):
    return row["label"] if row["reference_row"] else f"[{row['label']}]({prefix}pairs/{row['slug']}.html)"


FLIP_CLARITY = {(): "within the uncertainty in both spaces (noise)",
                ("fid",): "clear in the classifier's features only",
                ("fid_codes",): "clear in the autoencoder's codes only",
                ("fid", "fid_codes"): "clear in both: the feature spaces disagree"}


def report_markdown(comparison, summary, made):
    s, ex, ae = comparison["settings"], comparison["extractor"], comparison["second_extractor"]
    rows, pairs = summary["rows"], [r for r in summary["rows"] if not r["reference_row"]]
    seeds = sorted({len(r["seeds"]) for r in pairs})
    lines = ["# diffkit comparison", "",
             f"N = {s['samples']} samples per pair and training seed, scored against {s['dataset']} {s['reference']} "
             f"(held-out: {s['reference'] == 'test'}); sampling seed {s['seed']}. Features: `{ex.get('name')}` "
             f"(classifier test accuracy {ex.get('test_accuracy', 0):.2%}); second feature space `{ae.get('name')}` "
             f"(an autoencoder's 64-d codes, test RMSE {ae.get('test_rmse', 0):.3f}). ± is one standard error "
             f"(FID: bootstrap; KID: spread over subsets; rates: binomial); with several training seeds, the standard "
             f"error of the mean over seeds. **best** marks the best pair per metric and **≈ best** the pairs within "
             f"{SIGMAS} combined standard errors of it. k-NN metrics compare against an equal-sized random subset of the "
             f"reference. The last two rows are references, not generators: the **floor** (real training images: what a "
             f"perfect generator of the training distribution scores at this N) and a **copy** baseline (training images "
             f"plus faint pixel noise), which the memorisation columns must flag: NN-train distance ratio ≈ 1 and "
             f"authenticity ≈ {_test_authenticity(comparison):.3f} for unseen real "
             f"digits, far lower for copies.", ""]
    if seeds == [1]:
        lines += ["**One training seed per model: the verdicts below cover sampling noise only.** Two models trained "
                  "with different seeds differ by more than that; add `seeds = [0, 1, 2]` to `[compare]`.", ""]
    lines += ["## Scores", ""]
    marks = {key: standing(rows, key, higher) if isinstance(higher, bool) else [""] * len(rows)
             for key, _, higher in METRICS}
    body = []
    for i, r in enumerate(rows):
        cells = [page_link(r), sampler_cell(r), r["steps"] or "-", r["nfe"] or "-", len(r["seeds"]) or "-"]
        for key, _, _ in METRICS:
            mark = marks[key][i]
            cells.append(f"{r[key]:.4g} ± {r[key + '_std']:.2g}" + (f" **{mark}**" if mark else ""))
        body.append(cells)
    lines += table(["pair", "sampler", "steps", "NFE", "seeds"] + [label for _, label, _ in METRICS], body)
    lines += ["", "## Training seeds and verdicts", "",
              f"FID of each training seed, their mean ± standard deviation, and the per-sample standard error of that "
              f"mean. *vs best*: the verdict against the best pair at level {ALPHA} (better / worse / ~).", ""]
    lines += table(["pair", "seeds", "FID per seed", "mean ± sd over seeds", "per-sample SE", "vs best"],
                   [[r["label"], ", ".join(map(str, r["seeds"])), ", ".join(f"{v:.3g}" for v in r["fid_seeds"]),
                     f"{r['fid']:.4g} ± {_g(r['fid_seed_std'])}", f"{r['fid_sample_std']:.2g}",
                     r["verdict_vs_best"] or "best"] for r in pairs])
    lines += ["", "Every pair against every other on FID (row against column; p-value and test):", ""]
    lines += table([""] + [r["label"] for r in pairs],
                   [[a["label"]] + ["" if v is None else f"{v[0]} (p = {v[1]:.2g}, {v[2]})" for v in verdict_row]
                    for a, verdict_row in zip(pairs, summary["verdicts"])])
    lines += ["", "## Sample size and the floor", "",
              "FID falls as N grows (Chong & Forsyth 2020): compare only at equal N, or through FID∞, the intercept of "
              "FID against 1/N. *× floor*: the pair's FID over the floor's at the same N.", ""]
    lines += table(["pair", "N", "FID", "floor FID at N", "× floor", "FID∞", "× floor's FID∞"],
                   [[r["label"], r["n"], f"{r['fid']:.4g}", _g(r["floor_fid"]), _num(r["floor_ratio"], 1),
                     _g(r["fid_infinity"]), _num(r["floor_ratio_infinity"], 1)] for r in rows])
    if "sample_size" in made:
        lines += ["", f"![FID, KID and coverage against N, with the floor](figures/{made['sample_size']})"]
    agreement = summary["agreement"]
    tau = "-" if agreement["kendall_tau"] is None else f"{agreement['kendall_tau']:.3f}"
    lines += ["", "## Do the two feature spaces agree?", "",
              f"Kendall's τ between the {agreement['pairs']} pairs' FID rankings in the classifier's features and in the "
              f"autoencoder's codes: **{tau}** (1: the same order).", ""]
    if agreement["flips"]:
        lines += ["Pairs whose order flips between the two spaces (not a finding until it holds in both), and where "
                  "each difference exceeds 2 combined standard errors:", ""]
        lines += [f"- {cell(f['pair'][0])} ↔ {cell(f['pair'][1])}: {FLIP_CLARITY[tuple(f['clear_in'])]}"
                  for f in agreement["flips"]]
    else:
        lines += ["No pair's order flips."]
    lines += ["", "## Cost", "", "**frontier** marks the pairs no other pair of the same model beats on both NFE and FID.", ""]
    lines += table(["model", "sampler", "steps", "NFE", "FID", "frontier", "training images", "training s", "sampling s",
                    "s per 1,000 images"],
                   [[r["model"], sampler_cell(r), r["steps"], r["nfe"], f"{r['fid']:.4g} ± {r['fid_std']:.2g}",
                     "**frontier**" if r["frontier"] else "", r["training_images"], _num(r["training_seconds"]),
                     _num(r["sampling_seconds"]), _num(r["seconds_per_1000"])] for r in pairs])
    labels = [f"{r['pair'].label} · seed {r['train_seed']}" for r in comparison["results"]]
    lines += ["", "## FID between pairs (row: samples, column: reference pair)", ""]
    lines += table([""] + labels, [[label] + [f"{v:.2f}" for v in values]
                                   for label, values in zip(labels, comparison["fid_matrix"])])
    lines += ["", "## Figures", "", f"![training loss](figures/{made['loss']})", "",
              f"![class histograms](figures/{made['class_histograms']})", ""]
    for key, alt in [("steps", "metrics against sampling steps"), ("frontier", "FID against NFE and sampling time, per model"),
                     ("option", "FID and class entropy against the swept sampler option")]:
        if key in made:
            lines += [f"![{alt}](figures/{made[key]})", ""]
    lines += ["## Pairs", "", "Each pair's page shows its best and worst samples, their nearest training images, the "
              "class histogram, a reverse trajectory, its full config and provenance.", ""]
    for r in pairs:
        lines += [f"### {page_link(r)}", "", f"![samples of {r['label']}](figures/{made['pairs'][r['slug']]['grid']})", ""]
    return "\n".join(lines)


def _test_authenticity(comparison):
    return comparison["results"][0]["score"]["metrics"]["test_authenticity"] if comparison["results"] else float("nan")


def pair_markdown(row, results, figures, samples_folder):
    """A pair's page; its links are relative to REPORT_DIR/pairs/."""
    first = results[0]
    lines = [f"# {row['label']}", "", "[← the comparison](../report.html)", "",
             f"N = {row['n']} samples per training seed against {row['reference']}; figures from training seed "
             f"{first['train_seed']} (run `{first['run']}`).", "",
             "## Samples", "", f"![samples](../figures/{figures['grid']})", "",
             "Most confident (row 1) and least confident (row 3) samples by the classifier, each above its nearest "
             "training image (rows 2 and 4):", "", f"![best and worst with nearest training images](../figures/{figures['best_worst']})",
             "", "Generated class histogram:", "", f"![class histogram](../figures/{figures['classes']})", "",
             "Reverse trajectory x_T → x_0 of the first samples:", "",
             f"![reverse trajectory](../{samples_folder}/{first['samples_path'].stem}-path.png)", "",
             "## Scores per training seed", ""]
    lines += table(["metric"] + [f"seed {r['train_seed']}" for r in results],
                   [[label] + [str(r["score"]["metrics"][key]) for r in results] for key, label, _ in METRICS])
    lines += ["", "## Config and provenance", ""]
    for r in results:
        meta = r["meta"]
        record = {"run": r["run"], "training_seed": r["train_seed"], "training_step": meta.get("training_step"),
                  "weights_sha256": meta.get("weights_sha256"), "samples_cache_key": meta.get("cache_key"),
                  "sampler": meta.get("sampler"), "sampler_options": meta.get("sampler_options"),
                  "steps": meta.get("steps"), "nfe": meta.get("nfe"), "sampling_seed": meta.get("seed"),
                  "device": meta.get("device"), "versions": meta.get("versions"), "config": meta.get("config")}
        lines += [f"### training seed {r['train_seed']}", "", "```json", json.dumps(record, indent=2), "```", ""]
    return "\n".join(lines)
