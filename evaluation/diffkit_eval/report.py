"""Write a comparison's files: metrics.json/.csv, report.md, a self-contained report.html, figures/."""

import base64
import csv
import html
import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from diffkit.atomic import atomic_path, write_text  # noqa: E402
from diffkit.images import save_grid  # noqa: E402
from diffkit_eval.compare import log_of  # noqa: E402
from diffkit_eval.evaluate import METRICS  # noqa: E402

SIGMAS = 2  # a difference counts when it exceeds 2 standard errors of the difference


def rows_of(comparison):
    rows = []
    for r in comparison["results"]:
        pair, meta, score = r["pair"], r["meta"], r["score"]
        given = ", ".join(f"{k}={v}" for k, v in sorted(pair.options.items()))
        row = {"model": pair.model, "sampler": meta["sampler"], "steps": meta["steps"], "nfe": meta["nfe"],
               "options": given, "label": f"{pair.model} / {meta['sampler']}-{meta['steps']}" + (f" ({given})" if given else ""),
               "n": score["n"], "reference": f"{score['reference']['dataset']} {score['reference']['split']}",
               "training_images": meta.get("images_seen"), "training_seconds": meta.get("train_seconds"),
               "sampling_seconds": meta.get("seconds"), "sampler_options": meta.get("sampler_options", {})}
        for key, _, _ in METRICS:
            row[key] = score["metrics"][key]["value"]
            row[f"{key}_std"] = score["metrics"][key]["std"]
        row["class_histogram"] = score["metrics"]["class_histogram"]
        seconds = row["sampling_seconds"]
        row["seconds_per_1000"] = None if seconds is None else seconds / row["n"] * 1000
        rows.append(row)
    for row in rows:
        row["frontier"] = pareto_optimal(row, [r for r in rows if r["model"] == row["model"]])
    return rows


def pareto_optimal(row, rows):
    """Whether no other pair of the same model is at least as good on both NFE and FID and better on one."""
    return not any(o is not row and o["nfe"] <= row["nfe"] and o["fid"] <= row["fid"]
                   and (o["nfe"] < row["nfe"] or o["fid"] < row["fid"]) for o in rows)


def standing(rows, key, higher):
    """Per row: 'best', '≈ best' (within SIGMAS combined standard errors of the best) or ''."""
    best = max(rows, key=lambda r: r[key] if higher else -r[key])
    marks = []
    for r in rows:
        spread = SIGMAS * math.sqrt(r[f"{key}_std"] ** 2 + best[f"{key}_std"] ** 2)
        marks.append("best" if r is best else ("≈ best" if abs(r[key] - best[key]) <= spread else ""))
    return marks


def figure(path, draw, size=(6, 4)):
    fig = plt.figure(figsize=size)
    draw(fig)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def make_figures(comparison, rows, folder):
    folder.mkdir(parents=True, exist_ok=True)
    made = {}
    for r in comparison["results"]:
        slug = r["pair"].slug
        save_grid(folder / f"grid-{slug}.png", r["images"][:64], nrow=8)
        confidence = r["features"]["logits"].softmax(1).max(1).values
        order = confidence.argsort()
        best, worst = r["images"][order[-8:].flip(0)], r["images"][order[:8]]
        save_grid(folder / f"best-worst-{slug}.png", torch.cat([best, worst]), nrow=8)
        made[slug] = (f"grid-{slug}.png", f"best-worst-{slug}.png")

    def losses(fig):
        ax = fig.gca()
        for name in comparison["models"]:
            log = log_of(comparison["out_dir"] / "runs" / name)
            ax.plot([e["step"] for e in log], [e["loss"] for e in log], label=name)
        ax.set(xlabel="training step", ylabel="training loss (each model's own)", yscale="log")
        ax.legend(fontsize=7)

    figure(folder / "loss.png", losses)

    def histograms(fig):
        cols = min(4, len(rows))
        for i, row in enumerate(rows):
            ax = fig.add_subplot(math.ceil(len(rows) / cols), cols, i + 1)
            ax.bar(range(10), row["class_histogram"])
            ax.set_title(row["label"], fontsize=7)
            ax.set_xticks(range(10))
            ax.tick_params(labelsize=6)

    figure(folder / "class-histograms.png", histograms, size=(3 * min(4, len(rows)), 2.4 * math.ceil(len(rows) / 4)))
    series = {}
    for row in rows:
        series.setdefault((row["model"], row["sampler"]), []).append(row)
    multi = {k: sorted(v, key=lambda r: r["steps"]) for k, v in series.items() if len(v) > 1}
    if multi:
        def against_steps(fig):
            for i, key in enumerate(["fid", "precision", "recall", "coverage"]):
                ax = fig.add_subplot(2, 2, i + 1)
                for (model, sampler), rs in multi.items():
                    ax.errorbar([r["steps"] for r in rs], [r[key] for r in rs], [r[f"{key}_std"] for r in rs],
                                label=f"{model} / {sampler}", marker="o", capsize=2)
                ax.set(xlabel="sampling steps", ylabel=key, xscale="log")
                ax.legend(fontsize=6)

        figure(folder / "metrics-vs-steps.png", against_steps, size=(8, 6))
    per_model = {}
    for row in rows:
        per_model.setdefault(row["model"], []).append(row)
    per_model = {m: rs for m, rs in per_model.items() if len(rs) > 1}
    if per_model:
        def frontier(fig):
            for i, (model, rs) in enumerate(per_model.items()):
                lines = {}
                for r in rs:
                    lines.setdefault(sampler_cell(r), []).append(r)
                for j, (x_key, x_label) in enumerate([("nfe", "network evaluations per image (NFE)"),
                                                      ("seconds_per_1000", "sampling seconds per 1,000 images")]):
                    ax = fig.add_subplot(len(per_model), 2, 2 * i + j + 1)
                    for label, line in lines.items():
                        line = sorted((r for r in line if r[x_key] is not None), key=lambda r: r[x_key])
                        ax.errorbar([r[x_key] for r in line], [r["fid"] for r in line], [r["fid_std"] for r in line],
                                    label=label, marker="o", capsize=2)
                    best = [r for r in rs if r["frontier"] and r[x_key] is not None]
                    ax.scatter([r[x_key] for r in best], [r["fid"] for r in best], s=90, facecolors="none",
                               edgecolors="black", label="Pareto-optimal (NFE, FID)")
                    ax.set(xlabel=x_label, ylabel="FID", xscale="log", title=model)
                    ax.legend(fontsize=6)

        figure(folder / "frontier.png", frontier, size=(10, 3.6 * len(per_model)))
    sweeps = option_sweeps(rows)
    if sweeps:
        def against_option(fig):
            for i, (key, label) in enumerate([("fid", "FID"), ("class_entropy", "class entropy (ln 10 = 2.303)")]):
                ax = fig.add_subplot(1, 2, i + 1)
                for (model, sampler, steps, option), rs in sweeps.items():
                    ax.errorbar([r["sampler_options"][option] for r in rs], [r[key] for r in rs],
                                [r[f"{key}_std"] for r in rs], label=f"{model} / {sampler}-{steps}", marker="o", capsize=2)
                    ax.set(xlabel=option, ylabel=label)
                ax.legend(fontsize=6)

        figure(folder / "metrics-vs-option.png", against_option, size=(9, 3.6))
    return made


def option_sweeps(rows):
    """{(model, sampler, steps, option): rows sorted by it} where rows of one model, sampler and steps differ
    in exactly one numeric sampler option (a sweep of delta, say)."""
    groups, sweeps = {}, {}
    for row in rows:
        groups.setdefault((row["model"], row["sampler"], row["steps"]), []).append(row)
    for (model, sampler, steps), rs in groups.items():
        varying = {k for r in rs for k, v in r["sampler_options"].items()
                   if any(o["sampler_options"].get(k) != v for o in rs)}
        if len(rs) > 1 and len(varying) == 1:
            option = varying.pop()
            if all(isinstance(r["sampler_options"].get(option), (int, float)) for r in rs):
                sweeps[(model, sampler, steps, option)] = sorted(rs, key=lambda r: r["sampler_options"][option])
    return sweeps


def markdown(comparison, rows, made):
    s, ex = comparison["settings"], comparison["extractor"]
    lines = ["# diffkit comparison", "",
             f"N = {s['samples']} samples per pair, scored against {s['dataset']} {s['reference']} "
             f"(held-out: {s['reference'] == 'test'}), seed {s['seed']}. Features: `{ex.get('name')}` "
             f"(classifier test accuracy {ex.get('test_accuracy', 0):.2%}). ± is one standard error (FID: bootstrap; "
             f"KID: spread over subsets; rates: binomial). **best** marks the best pair per metric and "
             f"**≈ best** the pairs within {SIGMAS} combined standard errors of it: their difference is within the uncertainty. "
             f"k-NN metrics (precision, recall, density, coverage) compare against an equal-sized random subset of the "
             f"reference. The NN-train distance ratio is about 1 for unseen real digits; well below 1 means copying.",
             "", "## Scores", ""]
    header = ["model", "sampler", "steps", "NFE"] + [label for _, label, _ in METRICS]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    marks = {key: standing(rows, key, higher) if higher is not None else [""] * len(rows) for key, _, higher in METRICS}
    for i, r in enumerate(rows):
        cells = [r["model"], sampler_cell(r), str(r["steps"]), str(r["nfe"])]
        for key, _, _ in METRICS:
            mark = marks[key][i]
            cells.append(f"{r[key]:.4g} ± {r[key + '_std']:.2g}" + (f" **{mark}**" if mark else ""))
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "## Cost", "", "**frontier** marks the pairs no other pair of the same model beats on both NFE and FID.", "",
              "| model | sampler | steps | NFE | FID | frontier | training images | training s | sampling s | s per 1,000 images |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {sampler_cell(r)} | {r['steps']} | {r['nfe']} | {r['fid']:.4g} ± {r['fid_std']:.2g} | "
                     f"{'**frontier**' if r['frontier'] else ''} | {r['training_images']} | "
                     f"{_num(r['training_seconds'])} | {_num(r['sampling_seconds'])} | {_num(r['seconds_per_1000'])} |")
    labels = [r["label"] for r in rows]
    lines += ["", "## FID between pairs (row: samples, column: reference pair)", "",
              "| | " + " | ".join(labels) + " |", "|" + "---|" * (len(labels) + 1)]
    for label, values in zip(labels, comparison["fid_matrix"]):
        lines.append(f"| {label} | " + " | ".join(f"{v:.2f}" for v in values) + " |")
    lines += ["", "## Figures", "", "![training loss](figures/loss.png)", "",
              "![class histograms](figures/class-histograms.png)", ""]
    if (comparison["out_dir"] / "figures" / "metrics-vs-steps.png").exists():
        lines += ["![metrics against sampling steps](figures/metrics-vs-steps.png)", ""]
    if (comparison["out_dir"] / "figures" / "frontier.png").exists():
        lines += ["![FID against NFE and sampling time, per model](figures/frontier.png)", ""]
    if option_sweeps(rows):
        lines += ["![FID and class entropy against the swept sampler option](figures/metrics-vs-option.png)", ""]
    for r, label in zip(comparison["results"], labels):
        grid, best_worst = made[r["pair"].slug]
        lines += [f"### {label}", "", f"![samples](figures/{grid})", "",
                  "Most (top row) and least (bottom row) confident samples:", "", f"![best and worst](figures/{best_worst})", ""]
    return "\n".join(lines)


def sampler_cell(row):
    """The sampler, with the options the config gave it: pairs that differ only in options stay apart."""
    return row["sampler"] + (f" ({row['options']})" if row["options"] else "")


def _num(x):
    return "-" if x is None else f"{x:.0f}"


def html_page(md_text, folder):
    """A self-contained page from the markdown: tables, headings, text and base64-embedded images."""
    body, table = [], []

    def flush():
        if table:
            cells = [[c.strip() for c in line.strip("|").split("|")] for line in table if not set(line) <= set("|-")]
            head, *rest = cells
            body.append("<table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in head) + "</tr>" +
                        "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>" for row in rest) +
                        "</table>")
            table.clear()

    for line in md_text.splitlines():
        if line.startswith("|"):
            table.append(line)
            continue
        flush()
        if line.startswith("!["):
            alt, src = line[2:].split("](")
            data = base64.b64encode((folder / src.rstrip(")")).read_bytes()).decode()
            body.append(f'<p><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"></p>')
        elif line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            body.append(f"<h{level}>{html.escape(line.lstrip('# '))}</h{level}>")
        elif line:
            body.append(f"<p>{_inline(line)}</p>")
    flush()
    style = ("body{font-family:sans-serif;max-width:1200px;margin:auto;padding:1em}table{border-collapse:collapse;"
             "font-size:12px}td,th{border:1px solid #ccc;padding:3px 6px}img{max-width:100%;image-rendering:pixelated}")
    return f"<!doctype html><html><head><meta charset='utf-8'><title>diffkit comparison</title><style>{style}</style></head><body>{''.join(body)}</body></html>"


def _inline(text):
    out = html.escape(text)
    while "**" in out:
        out = out.replace("**", "<b>", 1).replace("**", "</b>", 1)
    while "`" in out:
        out = out.replace("`", "<code>", 1).replace("`", "</code>", 1)
    return out


def write_report(comparison):
    out = Path(comparison["out_dir"])
    rows = rows_of(comparison)
    made = make_figures(comparison, rows, out / "figures")
    record = {"settings": comparison["settings"], "models": comparison["models"], "extractor": comparison["extractor"],
              "rows": rows, "fid_matrix": comparison["fid_matrix"],
              "versions": {r["pair"].slug: r["meta"]["versions"] for r in comparison["results"]}}
    write_text(out / "metrics.json", json.dumps(record, indent=2))
    with atomic_path(out / "metrics.csv") as tmp, open(tmp, "w", newline="") as f:
        fields = [k for k in rows[0] if k != "class_histogram"]
        writer = csv.DictWriter(f, fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    md = markdown(comparison, rows, made)
    write_text(out / "report.md", md)
    write_text(out / "report.html", html_page(md, out))
    return rows
