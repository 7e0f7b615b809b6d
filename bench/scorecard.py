"""Time of a full scorecard: 10,000 images (the MNIST training subset) against the 10,000 test images, with the
feature spaces and the reference cached, as `diffkit evaluate` computes it.

    DIFFKIT_DATA=../shared/data python bench/scorecard.py            # this checkout
    DIFFKIT_DATA=../shared/data PYTHONPATH=OTHER:OTHER/evaluation:OTHER/plugins python bench/scorecard.py

The second form times another checkout's code (an older diffkit, say) with this venv: run both in one shell
command, so that the two figures share the machine's state. Prints one JSON line: the median of 3 timed
scorecards after one untimed, the spaces they were measured in, and the FID (a check that both scored alike).
"""

import json
import statistics
import time

import diffkit_eval
from diffkit.data import load_images
from diffkit_eval.evaluate import Evaluator


def main():
    start = time.perf_counter()
    evaluator = Evaluator("mnist", "test")
    ready = time.perf_counter() - start
    images = load_images("mnist", "train")
    result = evaluator.score(images)
    seconds = []
    for _ in range(3):
        tick = time.perf_counter()
        evaluator.score(images)
        seconds.append(time.perf_counter() - tick)
    spaces = [s["version"] for s in result["spaces"]] if "spaces" in result else [result["extractor"]["name"]]
    print(json.dumps({"code": diffkit_eval.__file__, "spaces": spaces, "evaluator_ready_s": round(ready, 2),
                      "scorecard_s": round(statistics.median(seconds), 2), "all_s": [round(s, 2) for s in seconds],
                      "fid": round(result["metrics"]["fid"].value, 3)}))


if __name__ == "__main__":
    main()
