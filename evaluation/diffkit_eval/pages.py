"""The report's text, as Markdown: report.md (every pair and both reference rows) and one page per pair.

The report answers first: which pair is best, the verdict of every other pair against it in words, the distance
from the floor, and the samples side by side; the full scorecard follows. The Markdown holds a little HTML
(hover titles, a collapsible section, the row of grids), which report.html renders and Markdown viewers show;
every piece of text that comes from a config or a file is escaped.
"""

import html
import json

from diffkit_eval.evaluate import METRICS
from diffkit_eval.figures import sampler_cell
from diffkit_eval.summary import ALPHA, SIGMAS, standing


def cell(text):
    """Text that is safe inside a Markdown table cell of a page that renders HTML."""
    return html.escape(str(text), quote=False).replace("|", "\\|")


def table(header, rows, numeric=()):
    """A Markdown table; the columns whose index is in `numeric` are right-aligned. Header cells are taken as
    they are (they may hold a hover title from `tip`); body cells are escaped."""
    align = "|" + "".join("---:|" if i in numeric else "---|" for i in range(len(header)))
    heads = [str(h) if str(h).startswith("<span title=") else cell(h) for h in header]
    return ["| " + " | ".join(h.replace("|", "\\|") if h.startswith("<span") else h for h in heads) + " |", align,
            *("| " + " | ".join(cell(c) for c in r) + " |" for r in rows)]


def tip(label, title):
    """A column header that explains itself on hover."""
    return f'<span title="{html.escape(title)}">{html.escape(label)}</span>'


def p_text(p):
    """A p-value as a reader takes it: `p < 1e-16` rather than the `p = 0` that float rounding prints."""
    return "p < 1e-16" if p < 1e-16 else f"p = {p:.2g}"


def verdict_words(row):
    """The verdict of a row against the best pair, in words: "best", "~ (p = 0.3)", "worse by 14 ± 3 (p = 0.001)"."""
    if not row["verdict_vs_best"]:
        return "best"
    if row["verdict_vs_best"] == "~":
        return f"~ ({p_text(row['p_vs_best'])})"
    return (f"{row['verdict_vs_best']} by {abs(row['fid_above_best']):.3g} ± {row['fid_above_best_std']:.2g} "
            f"({p_text(row['p_vs_best'])})")


TIPS = {
    "fid": "Fréchet distance between the Gaussians fitted to the samples' and the reference's features: lower is better",
    "kid": "Kernel distance (polynomial-kernel MMD²): lower is better, unbiased at small N",
    "precision": "Share of samples inside the real images' k-NN balls (k = 3): fidelity",
    "recall": "Share of real images inside the samples' k-NN balls (k = 3): diversity",
    "density": "How many real k-NN balls (k = 5) hold each sample, over k: fidelity robust to outliers",
    "coverage": "Share of real images whose k-NN ball (k = 5) holds a sample: diversity robust to outliers",
    "vendi": "Effective number of distinct samples (exp of the entropy of the cosine kernel's spectrum)",
    "fid_second": "FID in the second feature space: a ranking that holds in both spaces is a finding",
    "inception_score": "The classifier's Inception-Score analogue: confident and diverse classes score high",
    "class_entropy": "Entropy of the classifier's class histogram of the samples; ln 10 = 2.303 is every digit equally",
    "class_kl_uniform": "KL divergence of the class histogram from uniform: 0 is every digit equally",
    "mean_confidence": "The classifier's mean top probability on the samples",
    "nn_distance_ratio": "Median pixel distance to the nearest training image, over that of unseen test images: below 1 is copying",
    "near_copies": "Share of samples closer to a training image than 99% of test images are",
    "authenticity": "Share of samples farther from their nearest training image than its own nearest neighbour (Alaa et al.)",
    "conditioned_accuracy": "Conditional pairs: the share of samples the classifier puts in the class they were asked "
                            "to be",
    "class_fid": "Conditional pairs: FID within each class against that class's test images, averaged over the "
                 "classes (about N/10 images a class: far more small-sample bias than the overall FID)",
}
MAIN = ("fid", "kid", "precision", "recall", "coverage", "fid_second", "class_entropy", "conditioned_accuracy")


def _num(x, digits=0):
    return "-" if x is None else f"{x:.{digits}f}"


def _g(x):
    return "-" if x is None else f"{x:.4g}"


def page_link(row, prefix=""):
    return row["label"] if row["reference_row"] else f"[{row['label']}]({prefix}pairs/{row['slug']}.html)"


FLIP_CLARITY = {(): "within the uncertainty in both spaces (noise)",
                ("fid",): "clear in the primary space only",
                ("fid_second",): "clear in the second space only",
                ("fid", "fid_second"): "clear in both: the feature spaces disagree"}


def spaces_text(comparison):
    """The feature spaces every figure is measured in, by version."""
    spaces, classifier = comparison["spaces"], comparison["classifier"]
    text = f"Primary feature space `{spaces[0]['version']}` ({spaces[0]['name']}"
    text += f", test accuracy {spaces[0]['test_accuracy']:.2%})" if "test_accuracy" in spaces[0] else ")"
    if len(spaces) > 1:
        text += f"; second space `{spaces[1]['version']}` ({spaces[1]['name']})"
    return text + f"; class metrics from `{classifier['version']}`"


def summary_markdown(comparison, summary, made):
    """The answer first: the best pair in each space, every pair's verdict against it, the floor, the seeds."""
    rows, pairs = summary["rows"], [r for r in summary["rows"] if not r["reference_row"]]
    spaces = comparison["spaces"]
    best = next(r for r in pairs if not r["verdict_vs_best"])
    floor = next((r for r in rows if r["model"] == "floor"), None)
    lines = ["## Summary", ""]
    text = (f"**Best pair: {cell(best['label'])}**, FID {best['fid']:.3g} ± {best['fid_std']:.2g} in "
            f"`{spaces[0]['version']}`")
    if "fid_second" in best:
        second = min(pairs, key=lambda r: r["fid_second"])
        text += (f"; in the second space, `{spaces[1]['version']}`, the best is "
                 + ("the same pair" if second is best else f"{cell(second['label'])}")
                 + f" (FID {second['fid_second']:.3g} ± {second['fid_second_std']:.2g})")
    lines += [text + ".", ""]
    if floor and best["floor_fid"]:
        lines += [f"Real digits (the floor) score FID {best['floor_fid']:.3g} at N = {best['n']:,}: the best pair is "
                  f"{best['floor_ratio']:.1f}× the floor.", ""]
    seeds = sorted({len(r["seeds"]) for r in pairs if not r["imported"]})
    if seeds == [1]:
        lines += ["**One training seed per model: the verdicts cover sampling noise only.** Two models trained with "
                  "different seeds differ by more than that; add `seeds = [0, 1, 2]` to `[compare]`.", ""]
    elif seeds:
        lines += [f"Verdicts between pairs with several training seeds come from a Welch t-test over the seeds "
                  f"({', '.join(map(str, seeds))} seeds per model).", ""]
    header = ["pair", tip("N", "Samples scored: FID falls as N grows, so compare FIDs at equal N"),
              tip("FID", TIPS["fid"]), tip("vs best", f"The verdict against the best pair at level {ALPHA}: "
                                                      "~ is not distinguishable"),
              tip("× floor", "FID over the floor's (real digits) at the same N")]
    header += [tip("FID, second space", TIPS["fid_second"])] if "fid_second" in best else []
    body = [[page_link(r), f"{r['n']:,}", f"{r['fid']:.4g} ± {r['fid_std']:.2g}", verdict_words(r),
             _num(r["floor_ratio"], 1)] + ([f"{r['fid_second']:.4g} ± {r['fid_second_std']:.2g}"] if "fid_second" in r
                                           else []) for r in pairs]
    lines += table(header, body, numeric={1, 2, 4, 5}) + [""]
    if len({r["n"] for r in pairs}) > 1:
        lines += ["**The pairs were scored on different N.** FID falls as N grows (Chong & Forsyth 2020): compare "
                  "their × floor, which divides by the floor at each pair's own N, or their FID∞ below.", ""]
    figures = "".join(f'<figure><img src="figures/{made["pairs"][r["slug"]]["grid"]}" alt="samples of '
                      f'{html.escape(r["label"])}"><figcaption>{html.escape(r["label"])}<br>FID {r["fid"]:.3g}'
                      f'</figcaption></figure>' for r in pairs)
    lines += [f'<div class="grids">{figures}</div>', ""]
    return lines


def scores_markdown(rows, made):
    """The scorecard: the main metrics in one table, every metric in a collapsible one."""
    present = [key for key, _, _ in METRICS if any(key in r for r in rows)]  # conditional metrics: some rows only
    marks = {key: standing(rows, key, higher) if isinstance(higher, bool) else [""] * len(rows)
             for key, _, higher in METRICS if key in present}

    def metric_table(keys):
        shown = [m for m in METRICS if m[0] in keys and m[0] in present]
        body = []
        for i, r in enumerate(rows):
            cells = [page_link(r), sampler_cell(r), r["steps"] or "-", r["nfe"] or "-", len(r["seeds"]) or "-"]
            cells += [f"{r[key]:.4g} ± {r[key + '_std']:.2g}" + {"best": " ★", "≈ best": " ☆"}.get(marks[key][i], "")
                      if key in r else "-" for key, _, _ in shown]
            body.append(cells)
        header = ["pair", "sampler", "steps", "NFE", "seeds"] + [tip(label, TIPS[key]) for key, label, _ in shown]
        return table(header, body, numeric=set(range(2, len(header))))

    lines = ["## Scores", "", f"★ best pair on a metric; ☆ within {SIGMAS} combined standard errors of it. Hover a "
             f"column's name for what it measures. The last two rows are references, not generators.", ""]
    lines += metric_table(MAIN)
    lines += ["", "<details><summary>Every metric, the memorisation figures included</summary>", ""]
    lines += metric_table([key for key, _, _ in METRICS])
    lines += ["", "</details>", ""]
    return lines


def report_markdown(comparison, summary, made):
    s = comparison["settings"]
    rows, pairs = summary["rows"], [r for r in summary["rows"] if not r["reference_row"]]
    lines = ["# diffkit comparison", ""]
    lines += summary_markdown(comparison, summary, made)
    lines += scores_markdown(rows, made)
    lines += ["## How to read these figures", "",
              f"N = {s['samples']} samples per pair and training seed, scored against {s['dataset']} {s['reference']} "
              f"(held-out: {s['reference'] == 'test'}); sampling seed {s['seed']}. {spaces_text(comparison)}: every "
              f"score is a number in these spaces, comparable only with numbers in the same versions. ± is one "
              f"standard error (FID: bootstrap; KID: spread over subsets; rates: binomial); with several training "
              f"seeds, the standard error of the mean over seeds. k-NN metrics compare against an equal-sized random "
              f"subset of the reference. The **floor** is real images of the reference split's even-numbered half "
              f"scored against its odd-numbered half: what a perfect generator scores, the same on every machine. The "
              f"**copy** baseline (training images plus faint pixel noise) is what the memorisation columns must flag: "
              f"NN-train distance ratio ≈ 1 and authenticity ≈ {_test_authenticity(comparison):.3f} for unseen real "
              f"digits, far lower for copies.", ""]
    lines += ["", "## Training seeds and verdicts", "",
              f"FID of each training seed, their mean ± standard deviation, and the per-sample standard error of that "
              f"mean. *vs best*: the verdict against the best pair at level {ALPHA} (better / worse / ~).", ""]
    lines += table(["pair", "seeds", "FID per seed", "mean ± sd over seeds", "per-sample SE", "vs best"],
                   [[r["label"], ", ".join(map(str, r["seeds"])), ", ".join(f"{v:.3g}" for v in r["fid_seeds"]),
                     f"{r['fid']:.4g} ± {_g(r['fid_seed_std'])}", f"{r['fid_sample_std']:.2g}",
                     verdict_words(r)] for r in pairs], numeric={2, 3, 4})
    lines += ["", "Every pair against every other on FID (row against column; p-value and test):", ""]
    lines += table([""] + [r["label"] for r in pairs],
                   [[a["label"]] + ["" if v is None else f"{v[0]} ({p_text(v[1])}, {v[2]})" for v in verdict_row]
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
    if len(comparison["spaces"]) > 1:
        tau = "-" if agreement["kendall_tau"] is None else f"{agreement['kendall_tau']:.3f}"
        first, second = (sp["version"] for sp in comparison["spaces"][:2])
        lines += ["", "## Do the two feature spaces agree?", "",
                  f"Kendall's τ between the pairs' FID rankings in `{first}` and in `{second}`, over the "
                  f"{agreement['clear_pairs']} of {agreement['row_pairs']} pairs of rows whose difference is clear (beyond "
                  f"{SIGMAS} combined standard errors) in both: **{tau}** (1: the same order; - : no pair is clear in "
                  f"both).", ""]
        if agreement["flips"]:
            lines += ["Pairs whose order flips between the two spaces (not a finding until it holds in both), and "
                      "where each difference is clear:", ""]
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
    if "guidance" in made:
        lines += ["## Guidance", "",
                  "Conditional pairs at each guidance scale w (prediction = cond + w·(cond − uncond); a guided step costs "
                  "2 NFE). *Accuracy*: the share of samples the classifier puts in the class asked for; *per-class FID*: "
                  "the mean over classes, with the worst class.", ""]
        guided = sorted((r for r in pairs if r["guidance"] is not None and "conditioned_accuracy" in r),
                        key=lambda r: (r["model"], r["sampler"], r["steps"], r["guidance"]))
        lines += table(["pair", "w", "NFE", "FID", "accuracy", "per-class FID", "worst class", "precision", "recall"],
                       [[page_link(r), f"{r['guidance']:g}", r["nfe"], f"{r['fid']:.4g} ± {r['fid_std']:.2g}",
                         f"{r['conditioned_accuracy']:.3f} ± {r['conditioned_accuracy_std']:.2g}",
                         f"{r['class_fid']:.4g}" if "class_fid" in r else "-", r.get("class_fid_worst", "-"),
                         f"{r['precision']:.3f}", f"{r['recall']:.3f}"] for r in guided], numeric={1, 2, 3, 4, 5, 7, 8})
        lines += ["", f"![FID against conditioned accuracy as guidance grows, and precision and recall against w]"
                      f"(figures/{made['guidance']})", ""]
    lines += budgets_markdown(summary["budgets"], made)
    lines += failures_markdown(comparison.get("failures", []))
    lines += ["## Pairs", "", "Each pair's page shows its best and worst samples, their nearest training images, the "
              "class histogram, a reverse trajectory, its full config and provenance.", ""]
    for r in pairs:
        lines += [f"### {cell(page_link(r))}", "", f"![samples of {cell(r['label'])}](figures/{made['pairs'][r['slug']]['grid']})", ""]
    return "\n".join(lines)


def budgets_markdown(budgets, made):
    """The models ranked at each training budget, and whether the ranking at the last budget is the first's."""
    if len(budgets) < 2:
        return []
    lines = ["## Training budgets", "",
             "Each model's best pair at each budget (checkpoints of one training), best first; the verdict is against "
             "that budget's best at level 0.05 (~: not distinguishable).", ""]
    lines += table(["budget (steps)", "training images", "ranking (FID ± SE, verdict)"],
                   [[b["budget"], b["training_images"], "; ".join(f"{m} {r['fid']:.3g} ± {r['fid_std']:.2g} ({v})"
                                                                  for m, r, v in b["ranking"])] for b in budgets])
    first, last = ([m for m, _, _ in b["ranking"]] for b in (budgets[0], budgets[-1]))
    same = first == last
    lines += ["", f"The ranking at {budgets[-1]['budget']} steps ({' > '.join(last)}, best first) "
                  f"{'is the same as' if same else 'differs from'} the ranking at {budgets[0]['budget']} steps "
                  f"({' > '.join(first)}).", ""]
    if "budgets" in made:
        lines += [f"![FID against training images, one curve per model, with the floor](figures/{made['budgets']})", ""]
    return lines


def failures_markdown(failures):
    """The cells that failed: their one-line errors, and the pairs left out of the tables because of them."""
    if not failures:
        return []
    lines = ["## Failed cells", "", "These cells failed; the pairs that need them are left out of every table above. "
             "Fix the cause and run the same command: only what is left runs.", ""]
    return lines + table(["cell", "kind", "error"], [[f["cell"], f["kind"], f["error"]] for f in failures]) + [""]


def _test_authenticity(comparison):
    return comparison["results"][0]["score"]["metrics"]["test_authenticity"] if comparison["results"] else float("nan")


def pair_markdown(row, results, figures, samples_folder):
    """A pair's page; its links are relative to REPORT_DIR/pairs/."""
    first = results[0]
    lines = [f"# {cell(row['label'])}", "", "[← the comparison](../report.html)", "",
             f"N = {row['n']} samples per training seed against {row['reference']}; figures from training seed "
             f"{first['train_seed']} (run `{first['run']}`).", "",
             "## Samples", "", *([f"One row per class asked for (guidance w = {row['guidance']:g}):", ""]
                                  if row.get("guidance") is not None else []),
             f"![samples](../figures/{figures['grid']})", "",
             "Most confident (row 1) and least confident (row 3) samples by the classifier, each above its nearest "
             "training image (rows 2 and 4):", "", f"![best and worst with nearest training images](../figures/{figures['best_worst']})",
             "", "Generated class histogram:", "", f"![class histogram](../figures/{figures['classes']})", "",
             *(["Reverse trajectory x_T → x_0 of the first samples:", "",
                f"![reverse trajectory](../{samples_folder}/{first['samples_path'].stem}-path.png)", ""]
               if first["samples_path"] else [f"Imported from `{first['meta'].get('source')}`.", ""]),
             "## Scores per training seed", ""]
    lines += table(["metric"] + [f"seed {r['train_seed']}" for r in results],
                   [[label] + [str(r["score"]["metrics"][key]) for r in results]
                    for key, label, _ in METRICS if key in first["score"]["metrics"]])
    lines += ["", "## Config and provenance", ""]
    for r in results:
        meta = r["meta"]
        record = {"run": r["run"], "training_seed": r["train_seed"], "training_step": meta.get("training_step"),
                  "weights_sha256": meta.get("weights_sha256"), "samples_cache_key": meta.get("cache_key"),
                  "samples_reused": bool(meta.get("reused")),
                  "sampler": meta.get("sampler"), "sampler_options": meta.get("sampler_options"),
                  "steps": meta.get("steps"), "nfe": meta.get("nfe"), "sampling_seed": meta.get("seed"),
                  "device": meta.get("device"), "versions": meta.get("versions"), "config": meta.get("config")}
        lines += [f"### training seed {r['train_seed']}", "", "```json", json.dumps(record, indent=2), "```", ""]
    return "\n".join(lines)
