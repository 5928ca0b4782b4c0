"""Learning from unlabeled images: accuracy and fit time with and without ``X_unlabeled``.

    python benchmarks/semi_supervised.py [--tasks digits,textures] [--k 5,10,20] [--seeds 3]
                                         [--max-unlabeled N] [--max-test N] [--quick] [--noise]

For each visible task (scikit-learn digits; the synthetic textures), a stratified
30% of the images is the held-out test set; from the rest (the pool) ``k``
images per class are labeled and every other pool image is unlabeled.
``TransferClassifier()`` with its defaults (packaged EfficientNet-Lite0 weights)
is fitted on the labeled images alone, then with ``X_unlabeled`` (the rest of the
pool), with the same seed; each fit is timed and scored on the test set. Prints a
Markdown table: mean (± std) accuracy over seeds, how many seeds used the
pseudo-labels (the others fell back), how many images got a confident
pseudo-label (added to training only where used), mean fit seconds.
``--quick`` caps the unlabeled images at 300 and the test set at 300 (digits'
pool otherwise holds ~1,200 unlabeled images). ``--noise`` replaces the
unlabeled images by as many images of uniform noise (a useless ``X_unlabeled``:
the fit should fall back and equal the one without).
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def load(task: str):
    """Images (float in [0, 1], HWC) and integer labels."""
    if task == "digits":
        from sklearn.datasets import load_digits
        digits = load_digits()
        X = np.repeat((digits.images / 16.0).astype(np.float32)[..., None], 3, axis=-1)
        return X, digits.target
    if task == "textures":
        from easytl import make_textures
        X, y = make_textures(random_state=42)
        return X, np.unique(y, return_inverse=True)[1]
    raise ValueError(f"unknown task {task!r}")


def draw(y: np.ndarray, k: int, seed: int, max_unlabeled: int | None, max_test: int | None):
    """Positions of the labeled, unlabeled and test images of one draw."""
    from sklearn.model_selection import train_test_split
    pool, test = train_test_split(np.arange(len(y)), test_size=0.3, stratify=y, random_state=seed)
    rng = np.random.default_rng(seed)
    labeled = np.concatenate([rng.choice(pool[y[pool] == c], k, replace=False) for c in np.unique(y)])
    unlabeled = rng.permutation(np.setdiff1d(pool, labeled))
    if max_unlabeled is not None:
        unlabeled = unlabeled[:max_unlabeled]
    if max_test is not None and len(test) > max_test:
        test = rng.choice(test, max_test, replace=False)
    return labeled, unlabeled, test


def one_fit(X, y, parts, seed: int, with_unlabeled: bool, noise: bool = False) -> dict:
    from easytl import TransferClassifier
    labeled, unlabeled, test = parts
    U = X[unlabeled]
    if noise:
        U = np.random.default_rng(seed).random(U.shape, dtype=np.float32)
    clf = TransferClassifier(random_state=seed, verbose=0)
    start = time.perf_counter()
    clf.fit(X[labeled], y[labeled], X_unlabeled=U if with_unlabeled else None)
    seconds = time.perf_counter() - start
    semi = clf.plan_.get("semi_supervised") or {}
    return {"accuracy": float(clf.score(X[test], y[test])), "seconds": seconds,
            "predictions": clf.predict(X[test]),
            "used": bool(semi.get("used", False)), "pseudo": int(semi.get("n_pseudo_labeled", 0)),
            "note": semi.get("note")}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", default="digits,textures")
    parser.add_argument("--k", default="5,10,20", help="labeled images per class")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--max-unlabeled", type=int, default=None)
    parser.add_argument("--max-test", type=int, default=None)
    parser.add_argument("--noise", action="store_true",
                        help="unlabeled images of uniform noise instead of the pool's (a useless U)")
    parser.add_argument("--quick", action="store_true",
                        help="at most 300 unlabeled and 300 test images per draw")
    args = parser.parse_args(argv)
    if args.quick:
        args.max_unlabeled = args.max_unlabeled or 300
        args.max_test = args.max_test or 300
    rows = []
    for task in args.tasks.split(","):
        X, y = load(task)
        for k in (int(v) for v in args.k.split(",")):
            runs = {"without": [], "with": []}
            for seed in range(args.seeds):
                parts = draw(y, k, seed, args.max_unlabeled, args.max_test)
                runs["without"].append(one_fit(X, y, parts, seed, False))
                runs["with"].append(one_fit(X, y, parts, seed, True, args.noise))
                same = np.array_equal(runs["with"][-1]["predictions"], runs["without"][-1]["predictions"])
                print(f"{task} k={k} seed={seed}: without {runs['without'][-1]['accuracy']:.3f}, "
                      f"with {runs['with'][-1]['accuracy']:.3f}, same predictions: {same} "
                      f"({runs['with'][-1]['note']})", flush=True)
            rows.append((task + (" (noise U)" if args.noise else ""), k, len(parts[1]), len(parts[2]),
                         runs))
    print("\n| task | labeled / class | unlabeled | test | accuracy without U | accuracy with U | "
          "pseudo-labels used (seeds) | confident pseudo-labels | fit s without | fit s with |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for task, k, n_unlabeled, n_test, runs in rows:
        def stat(side, key):
            return np.array([r[key] for r in runs[side]], dtype=float)
        without, with_ = stat("without", "accuracy"), stat("with", "accuracy")
        print(f"| {task} | {k} | {n_unlabeled} | {n_test} | {without.mean():.3f} ± {without.std():.3f} | "
              f"{with_.mean():.3f} ± {with_.std():.3f} | {int(stat('with', 'used').sum())} of "
              f"{len(with_)} | {stat('with', 'pseudo').mean():.0f} | "
              f"{stat('without', 'seconds').mean():.1f} | {stat('with', 'seconds').mean():.1f} |")


if __name__ == "__main__":
    main()
