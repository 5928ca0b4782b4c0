"""The mirror test on digits: does the default's horizontal flip cost accuracy, and does the
symmetry test take it out where it does?

    python benchmarks/mirror.py [--train 400] [--sizes 32,96] [--seeds 0,1,2,3]

For each input size and seed: ``--train`` of scikit-learn's 1,797 digits
(drawn by the seed) train, the rest is the test set; three fits of
``TransferClassifier(image_size=size)``: ``augment="light"`` (the flip, no
test), ``augment="no_mirror"`` (no flip) and the default (the symmetry test
decides). Prints one Markdown row per size and seed: the three test
accuracies, the recipe the default chose and the mirror's loss increase ± its
standard error on the held-out images. Accuracy only: no times.
"""

from __future__ import annotations

import argparse

import numpy as np
from sklearn.datasets import load_digits

from easytl import TransferClassifier


def digits_split(n_train: int, seed: int):
    digits = load_digits()
    X = np.repeat((digits.images / 16.0).astype(np.float32)[..., None], 3, axis=-1)
    order = np.random.default_rng(seed).permutation(len(X))
    train, test = order[:n_train], order[n_train:]
    return X[train], digits.target[train], X[test], digits.target[test]


def row(n_train: int, size: int, seed: int) -> str:
    X, y, X_test, y_test = digits_split(n_train, seed)
    scores, default = {}, None
    for recipe in ("light", "no_mirror", "default"):
        clf = TransferClassifier(image_size=size, augment=recipe, random_state=seed, verbose=0)
        scores[recipe] = float((clf.fit(X, y).predict(X_test) == y_test).mean())
        default = clf if recipe == "default" else default
    mirror = (default.plan_.get("symmetries") or {}).get("tests", {}).get("mirror image")
    test = "not run" if mirror is None else \
        f"{mirror['increase']:+.2f} ± {mirror['standard_error']:.2f}"
    return (f"| {n_train} at {size} px, seed {seed} | {scores['light']:.3f} | "
            f"{scores['no_mirror']:.3f} | {scores['default']:.3f} | "
            f"{default.plan_.get('augment')} | {test} |")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=400)
    parser.add_argument("--sizes", default="32,96")
    parser.add_argument("--seeds", default="0,1,2,3")
    args = parser.parse_args(argv)
    print("| digits | light (flip) | no_mirror | default | default's recipe | mirror test |")
    print("|---|---|---|---|---|---|")
    for size in (int(s) for s in args.sizes.split(",")):
        for seed in (int(s) for s in args.seeds.split(",")):
            print(row(args.train, size, seed), flush=True)


if __name__ == "__main__":
    main()
