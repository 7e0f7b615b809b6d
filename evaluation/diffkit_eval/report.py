"""Write a comparison's files: metrics.json/.csv, report.md and report.html, a page per pair in pairs/, and
figures/. The folder opens from disk with no server: every image and link in the HTML is relative to it."""

import csv
import json
from pathlib import Path

from markdown_it import MarkdownIt

from diffkit.atomic import atomic_path, write_text
from diffkit_eval.compare import log_of
from diffkit_eval.figures import comparison_figures, pair_figures
from diffkit_eval.metrics import plain
from diffkit_eval.pages import pair_markdown, report_markdown
from diffkit_eval.summary import summarise

STYLE = ("body{font-family:sans-serif;max-width:1200px;margin:auto;padding:1em}table{border-collapse:collapse;"
         "font-size:12px}td,th{border:1px solid #ccc;padding:3px 6px}img{max-width:100%;image-rendering:pixelated}"
         "pre{background:#f6f6f6;padding:.5em;overflow:auto;font-size:11px}")


def html_page(md_text, title):
    """Markdown (tables included) rendered by markdown-it, raw HTML in the text escaped."""
    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(md_text)
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title><style>{STYLE}</style></head>"
            f"<body>{body}</body></html>")


def write_report(comparison):
    out = Path(comparison["out_dir"])
    summary = summarise(comparison)
    rows = summary["rows"]
    figures = out / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    logs = {name: log_of(out / "runs" / name) for name in comparison["models"]}
    made = comparison_figures(comparison, rows, figures, logs)
    made["pairs"] = {}
    for pair in comparison["pairs"]:
        results = [r for r in comparison["results"] if r["pair"] is pair]
        row = next(r for r in rows if not r["reference_row"] and r["slug"] == pair.slug())
        made["pairs"][row["slug"]] = pair_figures(results[0], comparison["train_images"], figures)
        md = pair_markdown(row, results, made["pairs"][row["slug"]], "samples")
        write_text(out / "pairs" / f"{row['slug']}.md", md)
        write_text(out / "pairs" / f"{row['slug']}.html", html_page(md, row["label"]))
    record = {"settings": comparison["settings"], "models": comparison["models"], "extractor": comparison["extractor"],
              "second_extractor": comparison["second_extractor"], "rows": rows, "verdicts": summary["verdicts"],
              "agreement": summary["agreement"], "fid_matrix": comparison["fid_matrix"],
              "versions": {r["pair"].slug(r["run"]): r["meta"]["versions"] for r in comparison["results"]}}
    write_text(out / "metrics.json", json.dumps(plain(record), indent=2))
    with atomic_path(out / "metrics.csv") as tmp, open(tmp, "w", newline="") as f:
        fields = [k for k, v in rows[0].items() if not isinstance(v, (dict, list))]
        writer = csv.DictWriter(f, fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    md = report_markdown(comparison, summary, made)
    write_text(out / "report.md", md)
    write_text(out / "report.html", html_page(md, "diffkit comparison"))
    return rows
