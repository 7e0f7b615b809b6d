"""The report's figures, as PNG files in REPORT_DIR/figures: the comparison's plots and each pair's images."""

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import torch  # noqa: E402

from diffkit.atomic import atomic_path  # noqa: E402
from diffkit.images import class_rows, save_grid  # noqa: E402
from diffkit_eval.metrics import nearest_training  # noqa: E402


def figure(path, draw, size=(6, 4)):
    fig = plt.figure(figsize=size)
    draw(fig)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def sampler_cell(row):
    """The sampler, with the options the config gave it and its guidance: pairs that differ only in options
    or guidance stay apart."""
    guided = "" if row.get("guidance") is None else f" w={row['guidance']:g}"
    return row["sampler"] + guided + (f" ({row['options']})" if row["options"] else "")


def pair_figures(result, train_images, folder):
    """A pair's images (of its first training seed): a grid (one row per class for a conditional pair), the
    most and least confident samples with the nearest training image under each, and its class histogram.
    Returns their file names."""
    slug = result["pair"].slug()
    images, labels = result["images"], result.get("labels")
    if labels is None:
        save_grid(folder / f"grid-{slug}.png", images[:64], nrow=8)
    else:
        save_grid(folder / f"grid-{slug}.png", *class_rows(images, labels))
    order = result["features"]["logits"].softmax(1).max(1).values.argsort()
    shown = torch.cat([order[-8:].flip(0), order[:8]])
    nearest = nearest_training(images[shown], train_images)[1]
    rows = [images[shown[:8]], train_images[nearest[:8]], images[shown[8:]], train_images[nearest[8:]]]
    save_grid(folder / f"best-worst-{slug}.png", torch.cat(rows), nrow=8)
    histogram = result["score"]["metrics"]["class_histogram"]

    def bars(fig):
        ax = fig.gca()
        ax.bar(range(10), histogram)
        ax.axhline(sum(histogram) / 10, color="black", linestyle=":", label="uniform")
        ax.set(xlabel="class (the classifier's)", ylabel="samples", xticks=range(10))
        ax.legend(fontsize=7)

    figure(folder / f"classes-{slug}.png", bars, size=(4, 2.6))
    return {"grid": f"grid-{slug}.png", "best_worst": f"best-worst-{slug}.png", "classes": f"classes-{slug}.png"}


def comparison_figures(comparison, rows, folder, logs):
    """The comparison's plots; returns {name: file} for those drawn (some need several steps or sizes). Every
    axis that shows a score names the feature space it was measured in."""
    pairs = [r for r in rows if not r["reference_row"]]
    made = {}
    space = comparison["spaces"][0]["version"] if comparison["spaces"] else "?"

    def in_space(name):
        return f"{name} ({space})"

    def losses(fig):
        ax = fig.gca()
        for name, log in logs.items():
            ax.plot([e["step"] for e in log], [e["loss"] for e in log], label=name)
        ax.set(xlabel="training step", ylabel="training loss (each model's own)", yscale="log")
        if logs:  # a comparison of imported sets only has no training
            ax.legend(fontsize=7)

    figure(folder / "loss.png", losses)
    made["loss"] = "loss.png"

    def histograms(fig):
        cols = min(4, len(pairs))
        for i, row in enumerate(pairs):
            ax = fig.add_subplot(math.ceil(len(pairs) / cols), cols, i + 1)
            ax.bar(range(10), row["class_histogram"])
            ax.set_title(row["label"], fontsize=7)
            ax.set_xticks(range(10))
            ax.tick_params(labelsize=6)

    figure(folder / "class-histograms.png", histograms, size=(3 * min(4, len(pairs)), 2.4 * math.ceil(len(pairs) / 4)))
    made["class_histograms"] = "class-histograms.png"

    if any(len(r["curve"]) > 1 for r in rows):
        def against_n(fig):
            for i, key in enumerate(["fid", "kid", "coverage"]):
                ax = fig.add_subplot(1, 3, i + 1)
                for row in rows:
                    sizes = sorted(row["curve"])
                    style = dict(linestyle="--", color="black") if row["model"] == "floor" else \
                        dict(linestyle=":", color="grey") if row["reference_row"] else {}
                    ax.plot(sizes, [row["curve"][n][key] for n in sizes], marker="o", label=row["label"], **style)
                ax.set(xlabel="samples N", ylabel=in_space(key.upper() if key != "coverage" else key), xscale="log",
                       yscale="log" if key == "fid" else "linear")
                ax.legend(fontsize=5)

        figure(folder / "sample-size.png", against_n, size=(13, 4))
        made["sample_size"] = "sample-size.png"

    series = {}
    for row in pairs:
        series.setdefault((row["model"], row["sampler"], row["guidance"]), []).append(row)
    multi = {k[:2]: sorted(v, key=lambda r: r["steps"]) for k, v in series.items() if len({r["steps"] for r in v}) > 1}
    if multi:
        def against_steps(fig):
            for i, key in enumerate(["fid", "precision", "recall", "coverage"]):
                ax = fig.add_subplot(2, 2, i + 1)
                for (model, sampler), rs in multi.items():
                    ax.errorbar([r["steps"] for r in rs], [r[key] for r in rs], [r[f"{key}_std"] for r in rs],
                                label=f"{model} / {sampler}", marker="o", capsize=2)
                ax.set(xlabel="sampling steps", ylabel=in_space(key), xscale="log")
                ax.legend(fontsize=6)

        figure(folder / "metrics-vs-steps.png", against_steps, size=(8, 6))
        made["steps"] = "metrics-vs-steps.png"

    per_model = {}
    for row in pairs:
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
                    ax.set(xlabel=x_label, ylabel=in_space("FID"), xscale="log", title=model)
                    ax.legend(fontsize=6)

        figure(folder / "frontier.png", frontier, size=(10, 3.6 * len(per_model)))
        made["frontier"] = "frontier.png"

    sweeps = guidance_sweeps(pairs)
    if sweeps:
        floor = next((r for r in rows if r["model"] == "floor"), None)

        def against_guidance(fig):
            trade, diversity = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
            for (model, sampler, steps), rs in sweeps.items():
                line = trade.errorbar([r["conditioned_accuracy"] for r in rs], [r["fid"] for r in rs],
                                      [r["fid_std"] for r in rs], [r["conditioned_accuracy_std"] for r in rs],
                                      marker="o", capsize=2, label=f"{model} / {sampler}-{steps}")
                for r in rs:
                    trade.annotate(f"w={r['guidance']:g}", (r["conditioned_accuracy"], r["fid"]), fontsize=6,
                                   xytext=(3, 3), textcoords="offset points")
                colour = line[0].get_color()
                diversity.plot([r["guidance"] for r in rs], [r["precision"] for r in rs], marker="o", color=colour,
                               label=f"{model}: precision")
                diversity.plot([r["guidance"] for r in rs], [r["recall"] for r in rs], marker="s", color=colour,
                               linestyle="--", label=f"{model}: recall")
            if floor:
                trade.axhline(floor["fid"], color="black", linestyle="--", label="floor (real test images)")
            trade.set(xlabel=f"conditioned accuracy ({comparison['classifier'].get('version', '?')})",
                      ylabel=in_space("FID"), yscale="log", title="guidance: fidelity against hitting the class")
            diversity.set(xlabel="guidance scale w", ylabel=in_space("precision, recall (k=3)"),
                          title="precision (solid) and recall (dashed)")
            trade.legend(fontsize=6)
            diversity.legend(fontsize=5, ncol=2)

        figure(folder / "guidance.png", against_guidance, size=(11, 4.2))
        made["guidance"] = "guidance.png"

    curves = budget_curves(pairs)
    if curves:
        floor = next((r for r in rows if r["model"] == "floor"), None)

        def against_budget(fig):
            ax = fig.gca()
            for (model, sampler), rs in curves.items():
                ax.errorbar([r["training_images"] for r in rs], [r["fid"] for r in rs], [r["fid_std"] for r in rs],
                            marker="o", capsize=2, label=f"{model} / {sampler}")
            if floor:
                ax.axhline(floor["fid"], color="black", linestyle="--", label="floor (real test images)")
            ax.set(xlabel="training images (steps)", ylabel=in_space("FID"), xscale="log", yscale="log",
                   title="FID against training budget (checkpoints of one training per model)")
            ticks = sorted({(r["training_images"], r["budget"]) for rs in curves.values() for r in rs})
            ax.set_xticks([t for t, _ in ticks], [f"{t:,}\n({b:,})" for t, b in ticks], minor=False)
            ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
            ax.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
            ax.yaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
            ax.legend(fontsize=7)

        figure(folder / "budgets.png", against_budget, size=(7, 4.4))
        made["budgets"] = "budgets.png"

    sweeps = option_sweeps(pairs)
    if sweeps:
        def against_option(fig):
            for i, (key, label) in enumerate([("fid", "FID"), ("class_entropy", "class entropy (ln 10 = 2.303)")]):
                ax = fig.add_subplot(1, 2, i + 1)
                for (model, sampler, steps, option), rs in sweeps.items():
                    ax.errorbar([r["sampler_options"][option] for r in rs], [r[key] for r in rs],
                                [r[f"{key}_std"] for r in rs], label=f"{model} / {sampler}-{steps}", marker="o", capsize=2)
                    ax.set(xlabel=option, ylabel=in_space(label) if key == "fid" else label)
                ax.legend(fontsize=6)

        figure(folder / "metrics-vs-option.png", against_option, size=(9, 3.6))
        made["option"] = "metrics-vs-option.png"
    return made


def budget_curves(rows):
    """{(model, sampler cell): rows sorted by budget} for pairs scored at several training budgets."""
    groups = {}
    for row in rows:
        if row.get("budget") is not None:
            groups.setdefault((row["model"], sampler_cell(row)), []).append(row)
    return {k: sorted(v, key=lambda r: r["budget"]) for k, v in groups.items() if len(v) > 1}


def guidance_sweeps(rows):
    """{(model, sampler, steps): rows sorted by guidance} for conditional pairs sampled at several scales."""
    groups = {}
    for row in rows:
        if row.get("guidance") is not None and "conditioned_accuracy" in row:
            groups.setdefault((row["model"], row["sampler"], row["steps"]), []).append(row)
    return {k: sorted(v, key=lambda r: r["guidance"]) for k, v in groups.items() if len(v) > 1}


def option_sweeps(rows):
    """{(model, sampler, steps, option): rows sorted by it} where rows of one model, sampler and steps differ
    in exactly one numeric sampler option (a sweep of delta, say)."""
    groups, sweeps = {}, {}
    for row in rows:
        groups.setdefault((row["model"], row["sampler"], row["steps"], row.get("guidance")), []).append(row)
    for (model, sampler, steps, _), rs in groups.items():
        varying = {k for r in rs for k, v in r["sampler_options"].items()
                   if any(o["sampler_options"].get(k) != v for o in rs)}
        if len(rs) > 1 and len(varying) == 1:
            option = varying.pop()
            if all(isinstance(r["sampler_options"].get(option), (int, float)) for r in rs):
                sweeps[(model, sampler, steps, option)] = sorted(rs, key=lambda r: r["sampler_options"][option])
    return sweeps
