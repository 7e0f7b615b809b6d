"""Training images/s in one process vs two gloo processes at the same global batch, fp32 vs bf16 autocast,
and sampling wall time on one vs two ranks, through the real CLI.

    python bench/devices.py                 # record the output in docs/benchmarks.md

Each configuration runs alone, one after another. Training speed is the log's images/s over steps
51-100 (the first 50 include start-up); sampling time is the whole command's wall time.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

TRAINING = [("1 process", 1, "fp32"), ("1 process", 1, "bf16"), ("2 gloo processes", 2, "fp32")]


def diffkit(args, ranks):
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(ranks)] \
        if ranks > 1 else [sys.executable]
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, os.cpu_count() // ranks))}
    start = time.perf_counter()
    subprocess.run([*launcher, "-m", "diffkit", *map(str, args)], check=True, capture_output=True, env=env)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--samples", type=int, default=512)
    parser.add_argument("--sample-steps", type=int, default=10)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {os.cpu_count()} cores; preset {args.preset}, {args.steps} steps")
    with tempfile.TemporaryDirectory() as tmp:
        for label, ranks, precision in TRAINING:
            run = Path(tmp) / f"{ranks}-{precision}"
            diffkit(["train", "--preset", args.preset, "--steps", args.steps, "--device", "cpu",
                     "--precision", precision, "--out", run], ranks)
            last = json.loads((run / "log.jsonl").read_text().splitlines()[-1])
            print(f"train  {label:18} {precision}  {last['images_per_s']:7.1f} img/s  (loss {last['loss']:.4f})")
        run = Path(tmp) / "1-fp32"
        for ranks in (1, 2):
            for precision in ("fp32", "bf16") if ranks == 1 else ("fp32",):
                seconds = diffkit(["sample", run, "-n", args.samples, "--steps", args.sample_steps, "--device", "cpu",
                                   "--precision", precision, "--out", Path(tmp) / f"s{ranks}{precision}.npz"], ranks)
                print(f"sample {ranks} rank(s) {precision}: {args.samples} images × {args.sample_steps} steps in "
                      f"{seconds:.1f} s wall ({args.samples / seconds:.1f} img/s, start-up included)")


if __name__ == "__main__":
    main()
