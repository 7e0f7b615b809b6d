"""What a comparison's tables say, computed once from its results: one row per pair (its training seeds
pooled), verdicts between pairs, the distance to the floor, and whether the two feature spaces agree.

A pair trained with several seeds shows its mean over seeds with their spread; a verdict between two pairs
comes from a Welch t-test over their seeds' FIDs when both have two or more seeds (training and sampling
noise), else from a z-test on the per-sample standard errors (sampling noise only), as benchstat prints it:
"better", "worse", or "~" when the difference is not distinguishable at level ALPHA.
"""

import math

import numpy as np
from scipy import stats

from diffkit_eval.evaluate import METRICS
from diffkit_eval.metrics import fid_infinity

ALPHA = 0.05
SIGMAS = 2  # "≈ best": within 2 combined standard errors of the best


def pooled(estimates):
    """(mean over seeds, its uncertainty, per-sample standard error of the mean, std over seeds or None)."""
    values = [e.value for e in estimates]
    k = len(values)
    sample_se = math.sqrt(sum(e.std ** 2 for e in estimates)) / k
    if k < 2:
        return values[0], sample_se, sample_se, None
    seed_std = float(np.std(values, ddof=1))
    return float(np.mean(values)), seed_std / math.sqrt(k), sample_se, seed_std


def metric_fields(scores):
    """The METRICS fields of a row from one score per seed."""
    row = {}
    for key, _, _ in METRICS:
        if key not in scores[0]["metrics"]:
            continue
        estimates = [s["metrics"][key] for s in scores]
        row[key], row[f"{key}_std"], row[f"{key}_sample_std"], row[f"{key}_seed_std"] = pooled(estimates)
        row[f"{key}_seeds"] = [e.value for e in estimates]
    row["class_histogram"] = [sum(h) for h in zip(*(s["metrics"]["class_histogram"] for s in scores))]
    if "class_fid_worst" in scores[0]["metrics"]:
        worst = scores[0]["metrics"]["class_fid_worst"]
        row["class_fid_worst"] = f"{worst['class']} (FID {worst['fid']:.3g})"
    return row


def curve_fields(curves):
    """FID against N (mean over seeds) and FID extrapolated to infinitely many samples."""
    sizes = sorted(set.intersection(*(set(c) for c in curves)))
    curve = {n: {key: float(np.mean([c[n][key].value for c in curves])) for key in ("fid", "kid", "coverage")}
             for n in sizes}
    infinities = [fid_infinity(c) for c in curves]
    infinity = [e.value for e in infinities if e is not None]
    return {"curve": curve, "fid_infinity": float(np.mean(infinity)) if infinity else None}


def _row(scores, curves, **fields):
    """A table row: the given fields, then the reference scored against and the pooled scores and curves."""
    reference = scores[0]["reference"]
    return {**fields, "n": scores[0]["n"], "reference": f"{reference['dataset']} {reference['split']}",
            **metric_fields(scores), **curve_fields(curves)}


def pair_row(pair, results):
    """One row from the results of a pair's training seeds (an imported set: its one set of images)."""
    meta, n = results[0]["meta"], results[0]["score"]["n"]
    seconds = [r["meta"].get("seconds") for r in results]
    sampling = None if None in seconds else float(np.mean(seconds))
    train_seconds = [r["meta"].get("train_seconds") for r in results]
    return _row([r["score"] for r in results], [r["curve"] for r in results],
                model=pair.model, sampler=meta["sampler"], steps=meta["steps"], nfe=meta["nfe"],
                options=pair.options_text, guidance=pair.guidance, budget=pair.budget, label=pair.label, slug=pair.slug(), reference_row=False,
                seeds=[r["train_seed"] for r in results if r["train_seed"] is not None], runs=[r["run"] for r in results],
                imported=pair.source is not None,
                training_images=meta.get("images_seen"),
                training_seconds=None if None in train_seconds else float(np.mean(train_seconds)),
                sampling_seconds=sampling, seconds_per_1000=None if sampling is None else sampling / n * 1000,
                sampler_options=meta.get("sampler_options", {}))


def reference_row(reference):
    """A reference row (floor or copy), shaped like a pair's."""
    name = reference["name"]
    return _row([reference["score"]], [reference["curve"]],
                model=name, sampler="-", steps=0, nfe=0, options="", guidance=None, budget=None, slug=name,
                label=f"{name} ({reference['info']['what']})", reference_row=True, seeds=[], runs=[], imported=False,
                training_images=None, training_seconds=None, sampling_seconds=None, seconds_per_1000=None,
                sampler_options={})


def verdict(a, b, key="fid", lower_is_better=True):
    """(verdict of row a against row b, p-value, test name)."""
    if len(a[f"{key}_seeds"]) >= 2 and len(b[f"{key}_seeds"]) >= 2 and (a[f"{key}_seed_std"] or b[f"{key}_seed_std"]):
        p, test = stats.ttest_ind(a[f"{key}_seeds"], b[f"{key}_seeds"], equal_var=False).pvalue, "Welch t over seeds"
    else:
        spread = math.hypot(a[f"{key}_std"], b[f"{key}_std"])
        z = (a[key] - b[key]) / spread if spread > 0 else (0.0 if a[key] == b[key] else math.inf)
        p, test = 2 * stats.norm.sf(abs(z)), "z over samples"
    p = float(p)
    if not p < ALPHA:
        return "~", p, test
    return ("better" if (a[key] < b[key]) == lower_is_better else "worse"), p, test


def standing(rows, key, higher):
    """Per row: 'best', '≈ best' (within SIGMAS combined standard errors of the best) or ''; reference rows
    take no part."""
    ranked = [r for r in rows if not r["reference_row"] and key in r]
    if not ranked:
        return [""] * len(rows)
    best = max(ranked, key=lambda r: r[key] if higher else -r[key])
    marks = []
    for r in rows:
        if r["reference_row"] or key not in r:
            marks.append("")
            continue
        spread = SIGMAS * math.hypot(r[f"{key}_std"], best[f"{key}_std"])
        marks.append("" if r["reference_row"] else
                     "best" if r is best else ("≈ best" if abs(r[key] - best[key]) <= spread else ""))
    return marks


def pareto_optimal(row, rows):
    """Whether no other pair of the same model is at least as good on both NFE and FID and better on one
    (an imported set, whose NFE is unknown, is on no frontier)."""
    if row["nfe"] is None:
        return False
    return not any(o is not row and o["nfe"] is not None and o["nfe"] <= row["nfe"] and o["fid"] <= row["fid"]
                   and (o["nfe"] < row["nfe"] or o["fid"] < row["fid"]) for o in rows)


def clear(a, b, key):
    """Whether rows a and b differ on `key` by more than SIGMAS combined standard errors."""
    return abs(a[key] - b[key]) > SIGMAS * math.hypot(a[f"{key}_std"], b[f"{key}_std"])


def rank_agreement(rows):
    """Whether the two feature spaces rank the pairs alike, counting only what the uncertainty lets one tell.

    Kendall's τ is computed over the pairs of rows whose FID difference is clear (beyond SIGMAS combined
    standard errors) in both spaces: (concordant − discordant) / their number, reported with that number, so
    noise cannot make it −1. Every pair of rows whose order flips is listed with the spaces where its
    difference is clear: in neither, noise; in both, a real disagreement."""
    ranked = [r for r in rows if not r["reference_row"] and "fid_second" in r]
    both = [(a, b) for i, a in enumerate(ranked) for b in ranked[i + 1:] if clear(a, b, "fid") and clear(a, b, "fid_second")]
    concordant = sum((a["fid"] - b["fid"]) * (a["fid_second"] - b["fid_second"]) > 0 for a, b in both)
    flips = [{"pair": [a["label"], b["label"]], "clear_in": [key for key in ("fid", "fid_second") if clear(a, b, key)]}
             for i, a in enumerate(ranked) for b in ranked[i + 1:]
             if (a["fid"] - b["fid"]) * (a["fid_second"] - b["fid_second"]) < 0]
    tau = (2 * concordant - len(both)) / len(both) if both else None
    return {"kendall_tau": tau, "clear_pairs": len(both), "pairs": len(ranked),
            "row_pairs": len(ranked) * (len(ranked) - 1) // 2, "flips": flips}


def floor_at(floor, n):
    """The floor's FID at N samples: measured where the floor has N images, else read off the line in 1/N
    through its curve (the floor has half the reference split's images, fewer than a 10,000-sample pair)."""
    if floor is None:
        return None
    curve = {size: values["fid"] for size, values in floor["curve"].items()}
    if n in curve:
        return curve[n]
    if len(curve) < 2:
        return None
    x = np.array([1 / size for size in curve])
    slope, intercept = np.polyfit(x, np.array(list(curve.values())), 1)
    return float(intercept + slope / n)


def budget_rankings(rows):
    """[{"budget", "training_images", "ranking": [(model, row, verdict against the budget's best)]}] for pairs
    scored at several training budgets: each model's best pair at each budget, best first."""
    budgets = sorted({r["budget"] for r in rows if not r["reference_row"] and r.get("budget") is not None})
    found = []
    for budget in budgets:
        best_of = {}
        for row in rows:
            if row.get("budget") == budget and not row["reference_row"]:
                if row["model"] not in best_of or row["fid"] < best_of[row["model"]]["fid"]:
                    best_of[row["model"]] = row
        ranked = sorted(best_of.values(), key=lambda r: r["fid"])
        found.append({"budget": budget, "training_images": ranked[0]["training_images"],
                      "ranking": [(r["model"], r, "best" if r is ranked[0] else verdict(r, ranked[0])[0])
                                  for r in ranked]})
    return found


def summarise(comparison):
    """{"rows", "verdicts", "agreement", "seeded"} for the report; rows are the pairs, then the references."""
    rows = [pair_row(pair, [r for r in comparison["results"] if r["pair"] is pair]) for pair in comparison["pairs"]]
    for row in rows:
        row["frontier"] = pareto_optimal(row, [r for r in rows if r["model"] == row["model"]])
    references = [{**reference_row(r), "frontier": False} for r in comparison["references"]]
    floor = next((r for r in references if r["model"] == "floor"), None)
    for row in rows + references:
        at_n = floor_at(floor, row["n"])
        row["floor_fid"] = at_n
        row["floor_ratio"] = row["fid"] / at_n if at_n else None
        infinite = floor and floor["fid_infinity"]
        row["floor_ratio_infinity"] = row["fid_infinity"] / infinite if infinite and row["fid_infinity"] is not None else None
    best = min(rows, key=lambda r: r["fid"]) if rows else None
    for row in rows:
        row["verdict_vs_best"], row["p_vs_best"], row["test_vs_best"] = ("", None, None) if row is best else verdict(row, best)
        row["fid_above_best"] = row["fid"] - best["fid"]
        row["fid_above_best_std"] = math.hypot(row["fid_std"], best["fid_std"])
    verdicts = [[verdict(a, b) if a is not b else None for b in rows] for a in rows]
    return {"rows": rows + references, "verdicts": verdicts, "agreement": rank_agreement(rows),
            "seeded": any(len(r["seeds"]) > 1 for r in rows), "budgets": budget_rankings(rows)}
