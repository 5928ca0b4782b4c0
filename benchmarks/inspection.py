"""Today's default against deeper, longer, larger, balanced and rotated fits on the inspection proxy.

    python benchmarks/inspection.py [--train 1500] [--test 500] [--size 288] [--only default,all]
    python benchmarks/inspection.py --quick        # a few minutes on 2 CPU cores: checks the
                                                   # script, not the conclusions (96 px, 160 images)

The data is :func:`easytl.make_inspection_images`: training images from the
training photos, test images from the other photos (split by source photo),
four severity classes with a rare one (4%). Each variant is one
``TransferClassifier`` fit in this process (fit timed, then predict on the
test set); the table gives accuracy, balanced accuracy, per-class recall and
the binary (defective vs good) accuracy of the four-class prediction, the
linear probe's validation accuracy (the first ``history_`` row: what a rule
deciding "features are weak" would see) and the fit time. Variants:

- ``default``: ``TransferClassifier()`` as a user gets it.
- ``probe``: the linear probe alone (frozen backbone + logistic regression).
- ``all``: the default's plan with every layer fine-tuned (same length, LR, warmup).
- ``longer``: the default's plan, twice (``--longer`` times) as many fine-tuning epochs.
- ``all_longer``: both.
- ``size320`` / ``size288``: the default at a larger input (its plan then shortens fine-tuning
  to its compute budget).
- ``balanced``: ``class_weight="balanced"`` and ``monitor="val_balanced_accuracy"``.
- ``rot90``: the default's crop/flip/jitter plus vertical flips and 90° turns.
- ``no_augment``: ``augment=None``.

Times measured beside other work are not benchmarks: run it alone on the machine.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from easytl import Phase, TransferClassifier, make_inspection_images  # noqa: E402
from easytl.data.augment import default_augment  # noqa: E402
from easytl.data.synthetic import INSPECTION_CLASSES  # noqa: E402
from easytl.training import adaptive  # noqa: E402

VARIANTS = ("default", "probe", "all", "longer", "all_longer", "size288", "size320", "balanced",
            "rot90", "no_augment")


def rot90_augment(images, generator):
    """The default augmentation, then a vertical flip and a turn by k × 90° per image (square
    images: labels of top-down and texture-like images do not depend on orientation)."""
    import torch
    x = default_augment(images.float().div_(255.0), images.shape[-1], generator)
    n = x.shape[0]
    flips = torch.rand(n, generator=generator) < 0.5
    turns = torch.randint(0, 4, (n,), generator=generator)
    x = torch.where(flips[:, None, None, None], x.flip(-2), x)
    return torch.stack([torch.rot90(image, int(k), dims=(-2, -1)) for image, k in zip(x, turns)])


def adaptive_phases(groups, epochs: int, lr: float = 1e-3):
    """The default plan's phases (probe, then fine-tuning), deeper or longer by choice."""
    return [Phase(1, 0, name="probe", probe=True),
            Phase(epochs, groups, lr=adaptive.FINE_TUNE_LR_SCALE * lr, backbone_lr_mult=1.0,
                  warmup_epochs=adaptive.WARMUP_EPOCHS, name="all" if groups == "all" else f"top{groups}")]


def variant_kwargs(name: str, default_epochs: int, longer: int, base: dict) -> dict:
    """Estimator arguments of a variant (``base`` carries --image-size in quick mode)."""
    groups, epochs = adaptive.TOP_GROUPS, default_epochs
    if name == "default":
        return dict(base)
    if name == "probe":
        return dict(base, schedule=[Phase(1, 0, name="probe", probe=True)], head="linear")
    if name in ("all", "longer", "all_longer"):
        groups = "all" if name.startswith("all") else groups
        epochs = epochs * longer if name.endswith("longer") else epochs
        return dict(base, schedule=adaptive_phases(groups, epochs), head="linear")
    if name.startswith("size"):
        return dict(base, image_size=int(name[len("size"):]))
    if name == "balanced":
        return dict(base, class_weight="balanced", monitor="val_balanced_accuracy")
    if name == "rot90":
        return dict(base, augment=rot90_augment)
    if name == "no_augment":
        return dict(base, augment=None)
    raise ValueError(f"unknown variant {name!r}; choose from {VARIANTS}")


def evaluate(clf, X_test, y_test) -> dict:
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, recall_score
    predicted = clf.predict(X_test)
    recall = recall_score(y_test, predicted, labels=list(INSPECTION_CLASSES), average=None,
                          zero_division=0)
    probe_row = clf.history_[0]
    return {"accuracy": accuracy_score(y_test, predicted),
            "balanced_accuracy": balanced_accuracy_score(y_test, predicted),
            "binary_accuracy": float(np.mean((predicted == "good") == (y_test == "good"))),
            "recall": {c: float(r) for c, r in zip(INSPECTION_CLASSES, recall)},
            "probe_val_accuracy": probe_row.get("val_accuracy"),
            "image_size": clf.image_size_, "phases": [p.name for p in clf.phases_],
            "epochs": len(clf.history_), "best_epoch": clf.best_epoch_,
            "seconds_by_phase": seconds_by_phase(clf.history_)}


def seconds_by_phase(history) -> dict:
    seconds: dict = {}
    for row in history:
        seconds[row["phase"]] = round(seconds.get(row["phase"], 0.0) + (row.get("seconds") or 0.0), 1)
    return seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=int, default=1500, help="training images (training photos)")
    parser.add_argument("--test", type=int, default=500, help="test images (the other photos)")
    parser.add_argument("--size", type=int, default=288, help="side of the generated images")
    parser.add_argument("--image-size", type=int, help="input size of every variant but sizeN")
    parser.add_argument("--longer", type=int, default=2, help="length factor of the *longer variants")
    parser.add_argument("--only", help=f"comma-separated variants (default: all of {VARIANTS})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true",
                        help="160/80 images of 96 px at a 96 px input: proves the script runs")
    parser.add_argument("--json", help="also write the raw results here")
    args = parser.parse_args(argv)
    if args.quick:
        args.train, args.test, args.size, args.image_size = 160, 80, 96, args.image_size or 96
    variants = args.only.split(",") if args.only else list(VARIANTS)
    X, y, _ = make_inspection_images(args.train, args.size, split="train", random_state=args.seed)
    X_test, y_test, _ = make_inspection_images(args.test, args.size, split="test",
                                               random_state=args.seed + 1000)
    base = {"random_state": args.seed, "verbose": 0}
    if args.image_size:
        base["image_size"] = args.image_size
    results, default_epochs = {}, None
    for name in variants:
        if default_epochs is None and name not in ("default", "probe"):
            size = args.image_size or min(224, args.size)  # the default's size on these images
            n_fit = len(y) - max(len(INSPECTION_CLASSES), round(adaptive.VAL_FRACTION * len(y)))
            default_epochs = adaptive.fine_tune_epochs(n_fit, 32, size, 224)
        kwargs = variant_kwargs(name, default_epochs or 1, args.longer, base)
        start = time.perf_counter()
        clf = TransferClassifier(**kwargs).fit(X, y)
        seconds = time.perf_counter() - start
        if name == "default":
            default_epochs = clf.phases_[-1].epochs
        results[name] = dict(evaluate(clf, X_test, y_test), fit_seconds=round(seconds, 1))
        print(f"{name}: {json.dumps(results[name])}", file=sys.stderr, flush=True)
    print(f"\ninspection proxy: {args.train} train / {args.test} test images of {args.size} px, "
          f"seed {args.seed}, {platform.processor() or platform.machine()}\n")
    print("| variant | input px | phases | acc | bal. acc | binary acc | recall good/minor/moderate/severe"
          " | probe val acc | fit s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        recall = "/".join(f"{r['recall'][c]:.2f}" for c in INSPECTION_CLASSES)
        probe = "" if r["probe_val_accuracy"] is None else f"{r['probe_val_accuracy']:.3f}"
        print(f"| {name} | {r['image_size']} | {'+'.join(r['phases'])} | {r['accuracy']:.3f} | "
              f"{r['balanced_accuracy']:.3f} | {r['binary_accuracy']:.3f} | {recall} | {probe} | "
              f"{r['fit_seconds']} |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
