"""Prior settings without retraining: refit a trained cold run's prior with other degradation options (the
network never sees the prior in training, so its weights stay valid), then sample and score each sampler.

    DIFFKIT_DATA=../shared/data python bench/refit_prior.py sweep/runs/blur-gentle \
        -o prior_features=pca -o prior_noise=0 --sampler cold-naive -n 1000

Prints one JSON line per sampler: FID ± its standard error, class entropy (ln 10 = 2.303), precision, recall,
the class histogram. Record the output with the command in docs/benchmarks.md.
"""

import argparse
import dataclasses
import json
import time

import torch

import diffkit
from diffkit.data import load_images, to_model_range
from diffkit.options import parse_options, split_assignments


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="a trained run whose degradation has a fitted prior")
    parser.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE",
                        help="degradation option to change before refitting the prior")
    parser.add_argument("--sampler", action="append", default=[], metavar="NAME[:K=V,...][@STEPS]",
                        help="sampler to score (repeatable; default: the run's own)")
    parser.add_argument("-n", type=int, default=1000, help="samples per sampler")
    args = parser.parse_args()

    run = diffkit.load(args.run_dir, device="cpu")
    d = run.degradation
    changes = split_assignments(args.option)
    if changes:
        d.options = parse_options(type(d.options), {**dataclasses.asdict(d.options), **changes}, "degradation")
        d.fit_prior(to_model_range(load_images(run.config.dataset, "train")),
                    torch.Generator().manual_seed(run.config.seed))
    for spec in args.sampler or [run.config.sampler]:
        spec, _, steps = spec.partition("@")
        name, _, options = spec.partition(":")
        start = time.perf_counter()
        samples = run.sample(args.n, sampler=name, options=split_assignments(options.split(",")) if options else None,
                             steps=int(steps) if steps else None, seed=0)
        seconds = time.perf_counter() - start
        m = diffkit.evaluate(samples, device="cpu")["metrics"]
        print(json.dumps({"run": args.run_dir, "options": changes, "sampler": spec, "steps": samples.meta["steps"],
                          "fid": round(m["fid"].value, 1), "fid_se": round(m["fid"].std, 1),
                          "class_entropy": round(m["class_entropy"].value, 3),
                          "precision": round(m["precision"].value, 3), "recall": round(m["recall"].value, 3),
                          "class_histogram": m["class_histogram"], "sample_s": round(seconds, 1)}), flush=True)


if __name__ == "__main__":
    main()
