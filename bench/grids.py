"""Sample grids side by side, one panel per samples file, for the README's figures.

    python bench/grids.py docs/images/ch2-matrix.png "ddpm / heun-10=REPORT/samples/ddpm__heun-10.npz" \
        "blur / cold-naive=REPORT/samples/blur__cold-naive-20.npz" ... [--columns 4] [--per-panel 64]

Each panel shows the first --per-panel images of its file (unconditional samples, in the order drawn).
"""

import argparse
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from diffkit.samples import load_samples  # noqa: E402


def tile(images, per_row):
    """(N, 1, H, W) uint8 -> one (rows·(H+1), per_row·(W+1)) array with 1-pixel white gutters."""
    n, _, h, w = images.shape
    rows = math.ceil(n / per_row)
    canvas = images.new_full((rows * (h + 1) - 1, per_row * (w + 1) - 1), 255)
    for i in range(n):
        r, c = divmod(i, per_row)
        canvas[r * (h + 1): r * (h + 1) + h, c * (w + 1): c * (w + 1) + w] = images[i, 0]
    return canvas.numpy()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="PNG to write")
    parser.add_argument("panels", nargs="+", metavar="LABEL=SAMPLES.npz")
    parser.add_argument("--columns", type=int, default=4, help="panels per figure row")
    parser.add_argument("--per-panel", type=int, default=64, help="images per panel (a square number)")
    args = parser.parse_args()
    side = math.isqrt(args.per_panel)
    rows = math.ceil(len(args.panels) / args.columns)
    fig, axes = plt.subplots(rows, args.columns, figsize=(2.4 * args.columns, 2.6 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, panel in zip(axes.flat, args.panels):
        label, _, path = panel.rpartition("=")
        images = load_samples(path).images
        ax.imshow(tile(images[: side * side], side), cmap="gray", vmin=0, vmax=255)
        ax.set_title(label, fontsize=9)
    fig.tight_layout()
    fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out} ({len(args.panels)} panels)")


if __name__ == "__main__":
    main()
