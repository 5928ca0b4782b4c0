"""``easytl evaluate MODEL DATA_DIR``: accuracy, per-class report, confusion matrix (and the HTML
error report) on labelled images.
"""

from __future__ import annotations

from . import commands
from .arguments import _positive_int, _table_arguments
from .commands import CommandError, _announce, _collect_images, _count, _report_bad, _say


def add_parser(command) -> None:
    """The ``evaluate`` sub-command (``command`` is build_parser's sub-command factory)."""
    evaluate = command("evaluate", run,
                       "accuracy, report and confusion matrix on labelled images",
                       "Evaluate a model file on DATA_DIR/<class>/<images> whose class names are "
                       "among the model's classes.",
                       ["easytl evaluate model.easytl test_photos/",
                        "easytl evaluate model.easytl test_photos/ --plot confusion.png --tta 5",
                        "easytl evaluate model.easytl test_photos/ --html report.html --train photos/"])
    evaluate.add_argument("model", metavar="MODEL")
    evaluate.add_argument("data_dir", metavar="DATA_DIR")
    evaluate.add_argument("--tta", type=_positive_int, default=1)
    evaluate.add_argument("--plot", help="also write the confusion matrix as a picture (needs matplotlib)")
    evaluate.add_argument("--html", help="also write the HTML error report (one self-contained file)")
    _table_arguments(evaluate)
    evaluate.add_argument("--train", metavar="TRAIN_DIR",
                          help="the training images: the HTML report looks for near-duplicates")


def run(args) -> int:
    _announce(args, f"loading {args.model}")
    clf = commands._load(args.model)  # looked up when called: tests give a model without a file
    if args.html:
        if clf.multi_label_:  # refused before any image is read or predicted
            raise CommandError("--html covers single-label models; for a multi-label one, evaluate "
                               "prints per-class figures and mean average precision (drop --html).")
        from ..io import check_writable
        check_writable(args.html)
    if args.labels:
        from ..data.tables import read_table
        files, y, _ = read_table(args.labels, args.label_column, args.data_dir, args.path_column,
                                 args.label_delim)
        images, bad = [str(f) for f in files], []
    else:  # decoded once, at the model's input size, for every use below
        images, y, bad = _labelled_folder(args.data_dir, clf)
    train_images = train_y = None
    if args.train:
        train_images, train_y, train_bad = _labelled_folder(args.train, clf)
        if train_bad:  # they only narrow the near-duplicate search: a note, not a failure
            _say(f"easytl: {_count(len(train_bad), 'training image')} in {args.train} could not be "
                 "read (listed above) and were left out of the near-duplicate search.")
    result = clf.report(images, y, n_augment=args.tta, html=args.html, X_train=train_images,
                        y_train=train_y)
    calibration = result["calibration"]
    if clf.multi_label_:
        args.emit(f"sample-averaged F1 {result['f1_samples']:.3f} on {_count(len(images), 'image')}; "
                  f"micro F1 {result['f1_micro']:.3f}, macro F1 {result['f1_macro']:.3f}, mean average "
                  f"precision {result['mean_average_precision']:.3f}")
        args.emit()
        args.emit(result["report"])
        return 0
    args.emit(f"accuracy {result['accuracy']:.3f} on {_count(len(images), 'image')}")
    if calibration["ece_before"] is not None:
        args.emit(f"calibration: temperature {calibration['temperature']:.3g}, expected calibration "
                  f"error {calibration['ece_before']:.4f} before, {calibration['ece_after']:.4f} after")
    args.emit()
    args.emit(result["report"])
    _emit_confusion_matrix(args.emit, result["labels"], result["confusion_matrix"])
    if args.plot:
        from ..plots import plot_report
        plot_report(result, args.plot)
        _say(f"easytl: confusion matrix plot written to {args.plot}")
    if args.html:
        args.emit(f"report written to {result['html']}")
    if bad:
        raise CommandError(f"{_count(len(bad), 'image')} could not be read (listed above) and "
                           f"{'was' if len(bad) == 1 else 'were'} not evaluated; the other "
                           f"{_count(len(images), 'image')} were.")
    return 0


def _emit_confusion_matrix(emit, labels, matrix) -> None:
    emit("confusion matrix (rows: true, columns: predicted):")
    names = [str(c) for c in labels]
    width = max(max(map(len, names)), len(str(matrix.max())))
    emit(" " * width + "  " + "  ".join(n.rjust(width) for n in names))
    for name, row in zip(names, matrix):
        emit(name.rjust(width) + "  " + "  ".join(str(v).rjust(width) for v in row))


def _labelled_folder(folder, clf):
    """The readable image files of a class folder, their labels (typed like the model's
    classes), and the unreadable ones."""
    import numpy as np

    from ..data.sources import read_class_folders
    paths, labels = read_class_folders(folder)
    if labels is None:
        raise CommandError(f"{folder} has no class sub-folders: evaluation needs "
                           "DIR/<class name>/<images>.")
    label_of = dict(zip(paths, labels))  # by class sub-folder, however deeply nested
    files, bad, images = _collect_images(paths, size=clf.image_size_)
    _report_bad(bad)
    if not files:
        raise CommandError(f"no readable images in {folder}.")
    y = np.array([label_of[f] for f in files])
    if clf.classes_.dtype.kind in "iu" and all(name.isdigit() for name in y):
        y = y.astype(clf.classes_.dtype)  # a model fitted on integer labels, folders named 0, 1, ...
    return images, y, bad
