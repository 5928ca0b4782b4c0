"""The weak-probe rule, measured: fine-tuning the top layer groups against every layer (but the
stem) for longer, on tasks where the linear probe is strong and where it is weak.

    python benchmarks/weak_probe.py                        # every task below
    python benchmarks/weak_probe.py --only digits,proxy128 # some of them
    python benchmarks/weak_probe.py --quick                # tiny sizes: proves the script runs
    python benchmarks/weak_probe.py --only proxy224 --fits deep --params '{"augment": "light"}'
                                                           # other estimator arguments (JSON)

For each task the default ``TransferClassifier()`` is fitted twice, in this
process, with the rule's bar moved so that the choice is forced either way:

* ``top``: the plan after a strong probe (the top 3 layer groups, the planned length);
* ``deep``: the plan after a weak probe (every layer but the stem, twice the length and
  compute budget).

Each row gives the probe's balanced accuracy on the held-out 10% (what the rule
reads; the same in both fits), test accuracy and balanced accuracy of both, and
their fit times. The rule (``adaptive.WEAK_PROBE_BELOW``) should go deep where
``deep`` wins and stay where it does not.

Tasks (training / test images):

* ``digits``: scikit-learn's digits, 1347 / 450 (96 px input);
* ``digits40``: 40 digits per class / the other 1,397;
* ``textures``: ``make_textures`` 300 / 100;
* ``proxy128``: :func:`easytl.make_inspection_images`, 600 / 300 images of 128 px
  (four severity classes, split by source photo), 128 px input;
* ``proxy_binary128``: the same images with only the ``good`` and ``severe`` classes;
* ``proxy224``: 800 / 400 images of 288 px at the default 224 px input (slow);
* ``proxy2000``: 2,000 / 500 images of 288 px, 224 px input (the issue's size: slower).

Times are one run each; on a machine shared with other work they are not benchmarks.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from easytl import TransferClassifier, make_inspection_images  # noqa: E402
from easytl.training import adaptive  # noqa: E402
from inspection import seconds_by_phase  # noqa: E402

TASKS = ("digits", "digits40", "textures", "proxy128", "proxy_binary128", "proxy224", "proxy2000")


def load(task: str, quick: bool):
    """(X_train, y_train, X_test, y_test, estimator arguments) of a task."""
    from common import load_data
    if task in ("digits", "digits40", "textures"):
        X, y, X_test, y_test, _ = load_data(task, "benchmark")
        if quick:
            X, y, X_test, y_test = X[::4], y[::4], X_test[::4], y_test[::4]
        return X, y, X_test, y_test, {}
    n_train, n_test, size, image_size = {"proxy224": (800, 400, 288, None),
                                         "proxy2000": (2000, 500, 288, None)}.get(
                                             task, (600, 300, 128, 128))
    if quick:
        n_train, n_test, size, image_size = 160, 80, 64, 64
    X, y, _ = make_inspection_images(n_train, size, split="train", random_state=0)
    X_test, y_test, _ = make_inspection_images(n_test, size, split="test", random_state=1000)
    if task == "proxy_binary128":
        keep, keep_test = np.isin(y, ["good", "severe"]), np.isin(y_test, ["good", "severe"])
        X, y, X_test, y_test = X[keep], y[keep], X_test[keep_test], y_test[keep_test]
    return X, y, X_test, y_test, ({} if image_size is None else {"image_size": image_size})


def fit_forced(X, y, params: dict, deep: bool, seed: int):
    """The default fit with the weak-probe rule forced on (deep) or off."""
    saved = adaptive.WEAK_PROBE_BELOW
    adaptive.WEAK_PROBE_BELOW = 1.01 if deep else 0.0
    try:
        clf = TransferClassifier(random_state=seed, verbose=0, **params)
        start = time.perf_counter()
        clf.fit(X, y)
        return clf, time.perf_counter() - start
    finally:
        adaptive.WEAK_PROBE_BELOW = saved


def scores(clf, X_test, y_test) -> dict:
    """Accuracy, balanced accuracy and recall per class, from one prediction pass."""
    report = clf.report(X_test, y_test)
    return {"accuracy": round(report["accuracy"], 4),
            "balanced_accuracy": round(report["balanced_accuracy"], 4),
            "recall": {str(c): round(r, 2) for c, r in report["recall"].items()}}


def run_task(task: str, quick: bool, seed: int, fits=("top", "deep"), extra=None) -> dict:
    X, y, X_test, y_test, params = load(task, quick)
    params.update(extra or {})
    row = {"task": task, "n_train": len(X), "n_test": len(X_test)}
    for name in fits:
        deep = name == "deep"
        clf, seconds = fit_forced(X, y, params, deep, seed)
        probe = clf.history_[0]
        row["probe_val_balanced_accuracy"] = probe.get("val_balanced_accuracy")
        row["probe_val_accuracy"] = probe.get("val_accuracy")
        row["image_size"] = clf.image_size_
        row[name] = dict(scores(clf, X_test, y_test), params=extra or {},
                         symmetries=clf.plan_.get("symmetries"), seconds=round(seconds, 1),
                         seconds_by_phase=seconds_by_phase(clf.history_),
                         phases=[f"{p.name}x{p.epochs}" for p in clf.phases_],
                         best_epoch=clf.best_epoch_)
        print(json.dumps({"task": task, name: row[name]}), file=sys.stderr, flush=True)
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", help=f"comma-separated tasks (default: all of {TASKS})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="a quarter of the data, small images")
    parser.add_argument("--fits", default="top,deep", help="which of the two fits to run")
    parser.add_argument("--json", help="also write the rows here (JSON lines, appended)")
    parser.add_argument("--params", type=json.loads, default=None,
                        help="more TransferClassifier arguments for every fit, as JSON")
    args = parser.parse_args(argv)
    tasks = args.only.split(",") if args.only else list(TASKS)
    rows = []
    for task in tasks:
        row = run_task(task, args.quick, args.seed, args.fits.split(","), args.params)
        rows.append(row)
        if args.json:
            with open(args.json, "a") as out:
                out.write(json.dumps(row) + "\n")
    print("| task | train / test | input px | probe val bal. acc | top: acc / bal. acc / s "
          "| deep: acc / bal. acc / s |")
    print("|---|---|---|---|---|---|")
    missing = {"accuracy": float("nan"), "balanced_accuracy": float("nan"), "seconds": float("nan")}
    for r in rows:
        top, deep = r.get("top", missing), r.get("deep", missing)
        print(f"| {r['task']} | {r['n_train']} / {r['n_test']} | {r['image_size']} | "
              f"{r['probe_val_balanced_accuracy']} | {top['accuracy']:.3f} / "
              f"{top['balanced_accuracy']:.3f} / {top['seconds']:.0f} | {deep['accuracy']:.3f} / "
              f"{deep['balanced_accuracy']:.3f} / {deep['seconds']:.0f} |")


if __name__ == "__main__":
    main()
