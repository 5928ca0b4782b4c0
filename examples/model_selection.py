"""Notebook §4 / exercise 1: compare backbones by cross-validated linear-probe accuracy.

Backbones whose pretrained weights cannot be had offline are listed as skipped.
Run: python examples/model_selection.py [--backbones efficientnet_lite0,resnet18,efficientnet_b0]
"""

import argparse

from easytl import compare_backbones, make_textures, plot_backbones


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backbones", default="efficientnet_lite0,resnet18,efficientnet_b0")
    parser.add_argument("--out", default="backbones.png")
    parser.add_argument("--n-per-class", type=int, default=50)
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--cv", type=int, default=3)
    args = parser.parse_args(argv)
    X, y = make_textures(n_per_class=args.n_per_class)
    rows = compare_backbones(X, y, backbones=args.backbones.split(","), cv=args.cv,
                             image_size=args.image_size)
    plot_backbones(rows, path=args.out)
    print(f"plot: {args.out}")
    return rows


if __name__ == "__main__":
    main()
