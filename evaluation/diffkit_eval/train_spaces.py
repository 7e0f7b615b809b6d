"""The script that trained the shipped feature spaces (`weights/diffkit-*-v1.safetensors`):

    DIFFKIT_DATA=../shared/data OMP_NUM_THREADS=1 python -m diffkit_eval.train_spaces --release v1

It trains the classifier and the autoencoder of every dataset on one CPU thread (the float arithmetic of a
release should not depend on a thread count) and prints each file's sha256, to pin in `spaces.SHIPPED`.
A new release gets a new name: scores in another space are other numbers.
"""

import argparse

import torch

from diffkit_eval.spaces import KINDS, WEIGHTS, save_space, shipped_name, train_space


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--release", required=True, help="version suffix of the space names, e.g. v1")
    parser.add_argument("--datasets", default="mnist,fashion-mnist")
    args = parser.parse_args()
    torch.set_num_threads(1)
    for dataset in args.datasets.split(","):
        for kind in KINDS:
            name = shipped_name(kind, dataset, args.release)
            model, info = train_space(kind, dataset)
            sha = save_space(WEIGHTS / f"{name}.safetensors", model, {**info, "name": name})
            print(f'    "{name}": "{sha}",  # {", ".join(f"{k}={v}" for k, v in info.items() if "sha" not in k)}',
                  flush=True)


if __name__ == "__main__":
    main()
