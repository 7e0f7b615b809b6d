"""Each degradation at equal training budget: its unconditional samples (read from a `diffkit compare`
report) beside the restoration of real degraded test images (`diffkit restore`, the paper's Tables 1–3).

    diffkit compare examples/coursework-ch2.toml --out ch2-report
    DIFFKIT_DATA=../shared/data python bench/cold.py ch2-report -n 2000   # record the output in docs/benchmarks.md
"""

import argparse
import json
import time
from pathlib import Path

from diffkit.run import Run
from diffkit_eval.evaluate import Evaluator
from diffkit_eval.restore import restore


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, help="output folder of `diffkit compare`")
    parser.add_argument("-n", type=int, default=2000, help="test images to degrade and restore per model")
    parser.add_argument("models", nargs="*", help="restore only these models (default: every model in the report)")
    args = parser.parse_intermixed_args()
    if not (args.report / "metrics.json").exists():
        parser.error(f"{args.report} holds no metrics.json; run `diffkit compare CONFIG --out {args.report}` first")
    report = json.loads((args.report / "metrics.json").read_text())
    unknown = sorted(set(args.models) - set(report["models"]))
    if unknown:
        parser.error(f"model {unknown[0]!r} is not in {args.report}; it has {', '.join(report['models'])}")
    evaluator = Evaluator("mnist", "test")

    print("Unconditional samples (from the prior), scored against MNIST test:\n")
    print("| model | degradation | sampler | N | FID | precision | recall | class entropy (ln 10 = 2.303) |")
    print("|---|---|---|---|---|---|---|---|")
    for row in report["rows"]:
        degradation = report["models"][row["model"]]["degradation"]
        sampler = row["sampler"] + (f"-{row['steps']}" if row["steps"] else "")
        print(f"| {row['model']} | {degradation} | {sampler} | {row['n']} | {row['fid']:.1f} ± {row['fid_std']:.1f} | "
              f"{row['precision']:.3f} | {row['recall']:.3f} | {row['class_entropy']:.2f} |")

    print(f"\nRestoration of {args.n} real test images degraded to t = T (RMSE and SSIM in [0, 1] pixels):\n")
    print("| model | sampler | RMSE degraded / direct / sampled | SSIM degraded / direct / sampled | "
          "FID degraded / direct / sampled | seconds |")
    print("|---|---|---|---|---|---|")
    for name in args.models or report["models"]:
        start = time.perf_counter()
        result, info = restore(Run.load(args.report / "runs" / name), evaluator, args.n)
        cells = [" / ".join(f"{result[kind][metric].value:.{digits}f}" for kind in ("degraded", "direct", "sampled"))
                 for metric, digits in (("rmse", 3), ("ssim", 3), ("fid", 1))]
        print(f"| {name} | {info['sampler']}-{info['steps']} | {' | '.join(cells)} | {time.perf_counter() - start:.0f} |",
              flush=True)


if __name__ == "__main__":
    main()
