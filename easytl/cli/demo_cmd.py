"""``easytl demo``: fit on the built-in synthetic textures and print a held-out report."""

from __future__ import annotations

import time

from ..constants import DEFAULT_BACKBONE
from .arguments import _positive_int, _size
from .commands import _announce, _classifier, _say


def add_parser(command) -> None:
    """The ``demo`` sub-command (``command`` is build_parser's sub-command factory)."""
    demo = command("demo", run,
                   "fit on the built-in synthetic textures and print a held-out report",
                   "Fit TransferClassifier with its defaults (offline pretrained EfficientNet-Lite0, "
                   "a linear probe then fine-tuning, all planned from the data) on the notebook's "
                   "synthetic textures and report "
                   "accuracy on a stratified 25% held-out split. No data or download needed.",
                   ["easytl demo", "easytl demo --epochs 6"])
    demo.add_argument("--backbone", default=DEFAULT_BACKBONE)
    demo.add_argument("--epochs", type=_positive_int, default=None,
                      help="total epochs (default: chosen from the data)")
    demo.add_argument("--image-size", type=_size, default="auto")
    demo.add_argument("--n-per-class", type=_positive_int, default=100)
    demo.add_argument("--seed", type=int, default=42)
    demo.add_argument("--verbose", type=int, default=1, choices=[0, 1])


def run(args) -> int:
    _announce(args, f"making synthetic textures ({args.n_per_class} per class)")
    classifier = _classifier()  # torch (and sklearn with it) first: the announcement covers the wait
    from sklearn.metrics import classification_report
    from sklearn.model_selection import train_test_split

    from ..data.synthetic import make_textures

    X, y = make_textures(n_per_class=args.n_per_class, random_state=args.seed)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, stratify=y, random_state=args.seed)
    _say(f"easytl demo: synthetic textures, {len(X_train)} training and {len(X_test)} held-out "
         f"images, backbone {args.backbone}")
    clf = classifier(backbone=args.backbone, epochs=args.epochs, image_size=args.image_size,
                     random_state=args.seed, verbose=args.verbose)
    start = time.perf_counter()
    clf.fit(X_train, y_train)
    seconds = time.perf_counter() - start
    predictions = clf.predict(X_test)
    accuracy = float((predictions == y_test).mean())
    args.emit(classification_report(y_test, predictions, digits=3))
    args.emit(f"held-out accuracy {accuracy:.3f}; fit took {seconds:.1f} s "
              f"(best epoch {clf.best_epoch_} of {len(clf.history_)})")
    return 0
