"""Write a comparison's files: metrics.json/.csv, report.md and report.html, a page per pair in pairs/, and
figures/. The folder opens from disk with no server: every image and link in the HTML is relative to it."""

import csv
import html
import json
from pathlib import Path

from markdown_it import MarkdownIt

from diffkit.atomic import atomic_path, write_text
from diffkit_eval.compare import log_of
from diffkit_eval.figures import comparison_figures, pair_figures
from diffkit_eval.metrics import plain
from diffkit_eval.pages import pair_markdown, report_markdown
from diffkit_eval.summary import summarise

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1d2329;max-width:1180px;margin:auto;padding:1em 1.5em}
h1{font-size:1.5em;margin:.3em 0}h2{font-size:1.2em;border-bottom:1px solid #dde;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;font-size:12.5px;margin:.5em 0;display:block;overflow-x:auto}
td,th{border:1px solid #d8dbe0;padding:3px 8px;white-space:nowrap;font-variant-numeric:tabular-nums}
th{background:#f3f5f8}tr:nth-child(even) td{background:#fafbfc}span[title]{border-bottom:1px dotted #889;cursor:help}
img{max-width:100%;image-rendering:pixelated}pre{background:#f6f7f9;padding:.5em;overflow:auto;font-size:11px}
.grids{display:flex;flex-wrap:wrap;gap:14px;margin:.6em 0;width:fit-content;max-width:100%}.grids figure{margin:0;text-align:center;font-size:12px}
.grids img{width:190px;border:1px solid #ccd}details{margin:.5em 0}summary{cursor:pointer;color:#35c}
code{background:#f1f3f5;padding:0 3px;border-radius:3px}
"""


def html_page(md_text, title):
    """Markdown (tables included) rendered by markdown-it with the report's own HTML (hover titles, details,
    the grids), and a small embedded stylesheet: the page needs nothing from outside its folder. Text from
    configs and files is escaped where the Markdown is written."""
    body = MarkdownIt("commonmark", {"html": True}).enable("table").render(md_text)
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body>{body}</body></html>")


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
    record = {"settings": comparison["settings"], "models": comparison["models"], "spaces": comparison["spaces"],
              "classifier": comparison["classifier"], "rows": rows, "verdicts": summary["verdicts"],
              "agreement": summary["agreement"], "fid_matrix": comparison["fid_matrix"],
              "budgets": [{"budget": b["budget"], "training_images": b["training_images"],
                           "ranking": [{"model": m, "fid": r["fid"], "verdict": v} for m, r, v in b["ranking"]]}
                          for b in summary["budgets"]],
              "failures": comparison.get("failures", []),
              "versions": {r["pair"].slug(r["run"]): r["meta"].get("versions", {}) for r in comparison["results"]}}
    write_text(out / "metrics.json", json.dumps(plain(record), indent=2))
    with atomic_path(out / "metrics.csv") as tmp, open(tmp, "w", newline="") as f:
        fields = list(dict.fromkeys(k for r in rows for k, v in r.items() if not isinstance(v, (dict, list))))
        writer = csv.DictWriter(f, fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    md = report_markdown(comparison, summary, made)
    write_text(out / "report.md", md)
    write_text(out / "report.html", html_page(md, "diffkit comparison"))
    return rows


def best_scores(folder):
    """{run: {"fid", "label"}}: each run's best FID in the report folder's metrics.json (None without one);
    a metrics.json that is not one diffkit wrote is one warning line, and its scores are left out."""
    path = Path(folder) / "metrics.json"
    if not path.is_file():
        return None
    scores = {}
    try:
        for row in json.loads(path.read_text()).get("rows", []):
            if row.get("reference_row"):
                continue
            for run, fid in zip(row["runs"], row["fid_seeds"]):
                if not isinstance(run, str) or isinstance(fid, bool) or not isinstance(fid, (int, float)):
                    raise TypeError
                if run not in scores or fid < scores[run]["fid"]:
                    scores[run] = {"fid": float(fid), "label": str(row.get("label"))}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        from rich.console import Console
        from rich.markup import escape

        Console(stderr=True).print(f"[yellow]Warning: {escape(str(path))} is not a diffkit report; its scores are "
                                   f"left out")
        return {}
    return scores
