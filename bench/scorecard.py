"""Time of a full scorecard (10,000 vs 10,000) and reference figures of the shared data.

    DIFFKIT_DATA=../shared/data python bench/scorecard.py     # record the output in docs/benchmarks.md

The figures tell a user how to read a score: what real unseen digits (the training subset against the
test split), mildly blurred digits and noise get on the same extractor.
"""

import time

import torch

from diffkit.data import load_images, to_model_range, to_uint8
from diffkit_cold.degradations import Blur, BlurOptions
from diffkit_eval.evaluate import METRICS, Evaluator

SHOWN = ["fid", "kid", "precision", "recall", "density", "coverage", "class_entropy", "nn_distance_ratio"]


def main():
    start = time.perf_counter()
    evaluator = Evaluator("mnist", "test")
    print(f"extractor {evaluator.extractor.name}: test accuracy {evaluator.extractor.info['test_accuracy']:.2%}; "
          f"classifier + reference ready in {time.perf_counter() - start:.1f} s (cached after the first run)")
    train = load_images("mnist", "train")  # independent of the test reference, unlike blurred test images
    sets = {"train subset (10k)": train}
    for sigma in (0.5, 1.0, 1.5, 2.0):
        blur = Blur(BlurOptions(T=1, sigma=sigma, kernel_size=9))
        sets[f"train blurred σ={sigma}"] = to_uint8(blur.degrade(to_model_range(train), torch.ones(len(train), dtype=torch.long)))
    sets["uniform noise (10k)"] = torch.randint(0, 256, train.shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    labels = {key: label for key, label, _ in METRICS}
    print(f"{'set (vs MNIST test, N=10,000)':28}" + "".join(f"{labels[k].split(' (')[0][:14]:>16}" for k in SHOWN) + f"{'seconds':>9}")
    for name, images in sets.items():
        tick = time.perf_counter()
        metrics = evaluator.score(images)["metrics"]
        seconds = time.perf_counter() - tick
        cells = "".join(f"{metrics[k].value:>9.4g}±{metrics[k].std:<6.2g}" for k in SHOWN)
        print(f"{name:28}{cells}{seconds:>9.1f}")


if __name__ == "__main__":
    main()
