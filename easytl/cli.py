"""The ``easytl`` command line."""

from __future__ import annotations

import argparse
import sys
import time


def _demo(args) -> int:
    from sklearn.metrics import classification_report
    from sklearn.model_selection import train_test_split

    from .classifier import TransferClassifier
    from .datasets import make_textures

    X, y = make_textures(n_per_class=args.n_per_class, random_state=args.seed)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, stratify=y, random_state=args.seed)
    print(f"easytl demo: synthetic textures, {len(X_train)} training and {len(X_test)} held-out "
          f"images, backbone {args.backbone}", file=sys.stderr)
    clf = TransferClassifier(backbone=args.backbone, epochs=args.epochs, image_size=args.image_size,
                             random_state=args.seed, verbose=args.verbose)
    start = time.perf_counter()
    clf.fit(X_train, y_train)
    seconds = time.perf_counter() - start
    predictions = clf.predict(X_test)
    accuracy = float((predictions == y_test).mean())
    print(classification_report(y_test, predictions, digits=3))
    print(f"held-out accuracy {accuracy:.3f}; fit took {seconds:.1f} s "
          f"(best epoch {clf.best_epoch_} of {len(clf.history_)})")
    return 0


def _backbones(args) -> int:
    from .backbones import list_backbones

    rows = list_backbones()
    print(f"{'name':<20} {'params (M)':>10} {'top-1 (%)':>9} {'input':>5}  {'source':<16} offline")
    for r in rows:
        print(f"{r['name']:<20} {r['params_m']:>10.2f} {r['top1']:>9.1f} {r['input_size']:>5}  "
              f"{r['source']:<16} {'yes' if r['offline'] else 'no'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="easytl", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser(
        "demo", help="fit on the built-in synthetic textures and print a held-out report",
        description="Fit TransferClassifier with its defaults (offline pretrained EfficientNet-Lite0, "
                    "progressive unfreezing) on the notebook's synthetic textures and report "
                    "accuracy on a stratified 25%% held-out split.",
        epilog="example: easytl demo --epochs 6")
    demo.add_argument("--backbone", default="efficientnet_lite0")
    demo.add_argument("--epochs", type=int, default=None, help="total epochs (default: schedule's)")
    demo.add_argument("--image-size", type=int, default=None)
    demo.add_argument("--n-per-class", type=int, default=100)
    demo.add_argument("--seed", type=int, default=42)
    demo.add_argument("--verbose", type=int, default=1)
    demo.set_defaults(run=_demo)

    backbones = commands.add_parser("backbones", help="list the backbone registry (model zoo)")
    backbones.set_defaults(run=_backbones)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, TypeError, FileNotFoundError, RuntimeError) as exc:
        print(f"easytl: error: {exc}", file=sys.stderr)
        return 1
