"""``easytl fit DATA_DIR --out MODEL``: fit on class sub-folders or a label table, report on the
held-out images, write the model file.
"""

from __future__ import annotations

import time
from pathlib import Path

from ..constants import DEFAULT_BACKBONE, SCHEDULE_NAMES
from .arguments import _lr, _positive_int, _recipe_arguments, _size, _table_arguments, _val_size, _workers
from .commands import (CommandError, _announce, _classifier, _count, _recipes, _say, _training_data,
                       _weights_hint)


def add_parser(command) -> None:
    """The ``fit`` sub-command (``command`` is build_parser's sub-command factory)."""
    fit = command("fit", run, "fit a classifier on a folder of class sub-folders",
                  "Fit TransferClassifier on DATA_DIR/<class>/<image files> (png, jpg, jpeg, bmp, "
                  "webp, gif, tif; any case), or on the images a --labels table names, print "
                  "per-epoch progress (stderr) and a report on the held-out validation images "
                  "(stdout), and write the model file atomically.",
                  ["easytl fit photos/ --out photos.easytl",
                   "easytl fit images/ --labels labels.csv --label-delim ';' --out tags.easytl",
                   "easytl fit photos/ --out photos.easytl --backbone resnet18 --schedule fine_tune "
                   "--epochs 8 --tta 5"])
    fit.add_argument("data_dir", metavar="DATA_DIR")
    fit.add_argument("--out", required=True, help="model file to write (e.g. model.easytl)")
    fit.add_argument("--backbone", default=DEFAULT_BACKBONE, help="see 'easytl backbones'")
    fit.add_argument("--weights", metavar="PATH", default=None,
                     help="a local state-dict file for the backbone (offline use)")
    fit.add_argument("--no-pretrained", action="store_true", help="random initialisation")
    fit.add_argument("--schedule", default="auto",
                     choices=SCHEDULE_NAMES,
                     help="auto (default): linear probe, then fine-tuning planned from the data")
    fit.add_argument("--epochs", type=_positive_int, default=None,
                     help="total epochs (default: chosen from the data)")
    fit.add_argument("--image-size", type=_size, default="auto",
                     help="model input size (default: auto, chosen from the images' size)")
    fit.add_argument("--batch-size", type=_positive_int, default=32)
    fit.add_argument("--lr", type=_lr, default=1e-3,
                     help="head learning rate, or auto (the LR range test picks it)")
    fit.add_argument("--val-size", type=_val_size, default="auto",
                     help="held-out fraction (or count) for validation; 0 for none (default: "
                          "auto, 10%% unless there are under 30 images per class)")
    fit.add_argument("--tta", type=_positive_int, default=1,
                     help="test-time augmentation views for the validation report")
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument("--workers", type=_workers, default="auto",
                     help="image decoding: auto (threads), 0 (none) or N worker processes")
    _recipe_arguments(fit)
    _table_arguments(fit)
    fit.add_argument("--unlabeled", metavar="DIR", default=None,
                     help="a folder of unlabeled images to learn from too (semi-supervised; used "
                          "only where cross-validation shows they help)")
    fit.add_argument("--skip-bad-images", action="store_true",
                     help="leave out unreadable image files instead of failing")
    fit.add_argument("--save-interrupted", action="store_true",
                     help="on Ctrl-C, write the best weights so far (if an epoch finished)")
    fit.add_argument("--verbose", type=int, default=1, choices=[0, 1], help="0: no progress")


def run(args) -> int:
    _announce(args, f"reading the images in {args.data_dir}")
    import numpy as np

    from ..data.images import UnreadableImagesError, describe_unreadable
    from ..io import check_writable

    paths, labels = _training_data(args)
    if args.unlabeled is not None and not Path(args.unlabeled).is_dir():
        raise CommandError(f"--unlabeled {args.unlabeled} is not a folder: give a folder of "
                           "images without labels.")
    check_writable(args.out)  # before training: a bad --out must not cost a fit
    weights = None if args.no_pretrained else (args.weights or "default")
    clf = _classifier()(backbone=args.backbone, weights=weights,
                        schedule=args.schedule, epochs=args.epochs, image_size=args.image_size,
                        batch_size=args.batch_size, lr=args.lr, val_size=args.val_size,
                        random_state=args.seed, verbose=args.verbose, num_workers=args.workers,
                        on_bad_image="skip" if args.skip_bad_images else "error", **_recipes(args))
    n_classes = len({c for row in labels for c in row}) if args.label_delim else len(np.unique(labels))
    if args.verbose:
        _say(f"easytl fit: {_count(len(paths), 'image')} in {_count(n_classes, 'class')} from "
             f"{args.data_dir}, backbone {args.backbone}, schedule {args.schedule}")
    start = time.perf_counter()
    try:
        with _weights_hint():
            clf.fit([str(p) for p in paths], labels, X_unlabeled=args.unlabeled)
    except UnreadableImagesError as exc:
        unlabeled = args.unlabeled is not None and str(exc).split(" cannot be read")[0].endswith(
            "X_unlabeled")
        where = f"--unlabeled {args.unlabeled}" if unlabeled else args.data_dir
        raise CommandError(f"{len(exc.bad)} image files in {where} cannot be read:\n"
                           f"{describe_unreadable(exc.bad)}\nRemove or re-save them, or pass "
                           "--skip-bad-images to leave them out.") from None
    seconds = time.perf_counter() - start
    if clf.interrupted_:
        return _interrupted_fit(clf, args)
    out = clf.save(args.out)
    if "semi_supervised" in clf.plan_:
        args.emit(f"unlabeled images: {clf.plan_['semi_supervised']['note']}")
    if clf.validation_indices_ is None:
        args.emit("no validation report: no images were held out (fewer than 30 per class, "
                  "or --val-size 0)")
    else:
        _report(clf, args, paths, labels)
    # Last, after the report: the line a user (or a log's tail) reads for what was kept.
    args.emit(f"fitted in {seconds:.1f} s; {_kept_epoch(clf)}; model written to {out}")
    return 0


def _report(clf, args, paths, labels) -> None:
    """The classification report on the held-out images."""
    # Positions in the listing, labelled as the library labelled them (class folder or table).
    val_paths = [paths[i] for i in clf.validation_indices_]
    val_labels = [labels[i] for i in clf.validation_indices_] if clf.multi_label_ else \
        labels[clf.validation_indices_]
    result = clf.report(val_paths, val_labels, n_augment=args.tta)
    tta = f", TTA {args.tta} views" if args.tta > 1 else ""
    score = "sample-averaged F1" if clf.multi_label_ else "accuracy"
    # Balanced accuracy beside accuracy: with a rare class, accuracy alone hides its recall.
    balanced = (f", balanced accuracy {result['balanced_accuracy']:.3f}"
                if "balanced_accuracy" in result else "")
    args.emit(f"validation ({_count(len(val_paths), 'held-out image')}{tta}): "
              f"{score} {result['accuracy']:.3f}{balanced}")
    args.emit(result["report"])


def _kept_epoch(clf) -> str:
    """Which epoch the model file holds, in words: a kept probe says so, and whether
    fine-tuning ran and lost to it."""
    n = len(clf.history_)
    if clf.best_epoch_ is None:
        probe = n and clf.history_[-1].get("phase") == "probe"
        return f"the last epoch ({n}{', the linear probe' + chr(39) + 's' if probe else ''}) kept"
    kept = f"best epoch {clf.best_epoch_} of {n}"
    if clf.history_[clf.best_epoch_ - 1].get("phase") == "probe":
        kept += (" (the linear probe's: fine-tuning did not improve on it on the held-out images)"
                 if n > clf.best_epoch_ else " (the linear probe's; fine-tuning did not run)")
    return kept


def _interrupted_fit(clf, args) -> int:
    """Ctrl-C ended training: leave --out alone unless asked, and never write an untrained model."""
    if not args.save_interrupted:
        _say(f"easytl: interrupted; {args.out} was not written (--save-interrupted keeps the best "
             "weights so far)")
        return 130
    if not clf.history_:
        _say(f"easytl: interrupted before the first epoch ended: nothing trained, {args.out} not "
             "written")
        return 130
    out = clf.save(args.out)
    n = len(clf.history_)
    # Without validation there is no best epoch: the weights are the last finished epoch's.
    kept = (f"best weights so far (epoch {clf.best_epoch_})" if clf.best_epoch_ is not None else
            "the last finished epoch's weights (no held-out images to pick a best epoch by)")
    args.emit(f"interrupted after {_count(n, 'epoch')}; {kept} written to {out}")
    return 130
