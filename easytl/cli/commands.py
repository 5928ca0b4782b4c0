"""What each ``easytl`` command does; ``easytl.cli`` parses the arguments and calls these.

Every command returns its exit code, writes results through ``args.emit``
(stdout) and everything else to stderr; heavy modules are imported inside the
commands, so parsing stays fast.
"""

from __future__ import annotations

import contextlib
import csv
import json
import sys
import time
from pathlib import Path


class CommandError(Exception):
    """A failure the command has already explained; main prints it and exits with 1."""


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _announce(args, doing: str) -> None:
    """A command's first line, on stderr before it imports torch (3-4 s): the user sees at once
    what it is doing. Every command but ``backbones`` (which needs no torch) starts with it;
    ``--verbose 0`` silences it, as it does progress."""
    if getattr(args, "verbose", 1):
        _say(f"easytl {args.command}: {doing} ...")


def _classifier():
    from ..classifier import TransferClassifier
    return TransferClassifier


def _load(path):
    return _classifier().load(path)


def _collect_images(paths, size: int):
    """Files and folders (recursed) → (readable image files, [(path, reason), ...] for the rest,
    the readable files as a source decoded once at the model input ``size``, so that
    predicting, scoring novelty and test-time views decode nothing again)."""
    from ..data.sources import list_image_files

    files, bad = [], []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = list_image_files(path)
            if not found:
                bad.append((path, "folder holds no image files"))
            files += found
        elif path.exists():
            files.append(path)  # decoded below: an image without the usual extension still counts
        else:
            bad.append((path, "no such file or folder"))
    from ..constants import DEFAULT_CACHE_MEMORY, parse_bytes
    from ..data.decoded import read_files_once
    source, unreadable = read_files_once(files, size, parse_bytes(DEFAULT_CACHE_MEMORY, "memory"),
                                         verbose=1)
    if unreadable:
        broken = {p for p, _ in unreadable}
        files = [f for f in files if f not in broken]
        bad += unreadable
    return files, bad, source


def _report_bad(bad) -> None:
    for path, reason in bad:
        _say(f"easytl: cannot read {path}: {reason}")


# --------------------------------------------------------------------------- commands

def _training_data(args):
    """Image paths and labels of DATA_DIR: its class sub-folders, or the --labels table."""
    from ..data.sources import read_class_folders
    if args.labels:  # a table of paths (relative to DATA_DIR) and labels
        from ..data.tables import read_table
        try:
            paths, labels, _ = read_table(args.labels, args.label_column, args.data_dir,
                                          args.path_column, args.label_delim,
                                          "skip" if getattr(args, "skip_bad_images", False) else "error")
        except ValueError as exc:  # the library's hint, as the shell spells it
            hint = (", or pass --skip-bad-images to leave them out" if hasattr(args, "skip_bad_images")
                    else "")
            raise CommandError(str(exc).replace(", or pass on_bad_image='skip' to leave them out",
                                                hint)) from None
        if labels is None:
            raise CommandError(f"{args.labels} has no label column: name it with --label-column.")
    else:
        paths, labels = read_class_folders(args.data_dir)
        if labels is None:
            raise CommandError(f"{args.data_dir} has no class sub-folders: lay it out as "
                               "DATA_DIR/<class name>/<images>, or give --labels labels.csv.")
    if not getattr(args, "label_delim", None):  # a multi-label model may learn a single label
        _check_two_classes(labels, args.labels or args.data_dir, folder=not args.labels)
    return paths, labels


def _check_two_classes(labels, where, folder: bool) -> None:
    """A classifier needs two classes: name the folder (or table) and its one class, not ``y``."""
    import numpy as np
    classes = np.unique(np.asarray(labels).astype(str))
    if len(classes) == 1:
        what = "class sub-folder" if folder else "label"
        fix = ("DATA_DIR/<class name>/<images>, one sub-folder per class" if folder
               else "one row per image, with at least two distinct labels")
        raise CommandError(f"{where} holds a single {what}, '{classes[0]}'; a classifier needs at "
                           f"least 2 classes: {fix}.")


def _recipes(args) -> dict:
    """The training-recipe options as TransferClassifier parameters."""
    return dict(augment=None if args.augment == "none" else args.augment, mixup=args.mixup,
                cutmix=args.cutmix, label_smoothing=args.label_smoothing, ema=args.ema,
                accumulate=args.accumulate)


def fit(args) -> int:
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
    args.emit(f"fitted in {seconds:.1f} s; {_kept_epoch(clf)}; model written to {out}")
    if clf.validation_indices_ is None:
        args.emit("no validation report: no images were held out (fewer than 30 per class, "
                  "or --val-size 0)")
        return 0
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
    return 0


def _kept_epoch(clf) -> str:
    """Which epoch the model file holds, in words: a kept probe says that fine-tuning lost."""
    n = len(clf.history_)
    if clf.best_epoch_ is None:
        return f"the last epoch ({n}) kept"
    kept = f"best epoch {clf.best_epoch_} of {n}"
    if n > clf.best_epoch_ and clf.history_[clf.best_epoch_ - 1].get("phase") == "probe":
        kept += " (the linear probe's: fine-tuning did not improve on it on the held-out images)"
    return kept


def lr_find(args) -> int:
    _announce(args, f"reading the images in {args.data_dir}")
    paths, labels = _training_data(args)
    clf = _classifier()(backbone=args.backbone, schedule=args.schedule, image_size=args.image_size,
                        batch_size=args.batch_size, random_state=args.seed, verbose=args.verbose,
                        **_recipes(args))
    with _weights_hint():
        result = clf.lr_find([str(p) for p in paths], labels, start_lr=args.start_lr,
                             end_lr=args.end_lr, num_steps=args.steps)
    diverged = (f"; the loss diverged at {result.diverged_at:.2g}" if result.diverged_at
                else "; the loss did not diverge (try a larger --end-lr)")
    if result.suggestion is None:  # the sweep showed no LR better than its smallest
        args.emit(f"no suggestion: {result.reason} ({len(result.lrs)} steps of the {result.phase} "
                  f"phase, lr {result.lrs[0]:.2g} to {result.lrs[-1]:.2g}{diverged}); keep the "
                  "default lr, or sweep more steps (--steps, more images)")
    else:
        args.emit(f"suggested lr {result.suggestion:.2g} (steepest descent of the {result.phase} "
                  f"phase's loss; lowest loss at {result.min_loss_lr:.2g}{diverged}); "
                  f"use: easytl fit {args.data_dir} --lr {result.suggestion:.2g}")
    if args.plot:
        from ..plots import plot_lr_find
        plot_lr_find(result, path=args.plot)
        args.emit(f"curve written to {args.plot}")
    return 0


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
    args.emit(f"interrupted after {_count(len(clf.history_), 'epoch')}; best weights so far (epoch "
              f"{clf.best_epoch_}) written to {out}")
    return 130


@contextlib.contextmanager
def _weights_hint():
    """Pretrained weights that cannot be downloaded: say how to pass a local file from the shell."""
    from ..models.backbones import WeightsUnavailableError
    try:
        yield
    except WeightsUnavailableError as exc:
        reason = str(exc).split(" Alternatives:")[0]
        raise CommandError(f"{reason} Pass a local state-dict file with --weights PATH, use "
                           "--backbone efficientnet_lite0 (weights ship with easytl), or "
                           "--no-pretrained.") from None


def predict(args) -> int:
    _announce(args, f"loading {args.model}")
    clf = _load(args.model)
    files, bad, images = _collect_images(args.paths, size=clf.image_size_)
    _report_bad(bad)
    if files:
        if args.tta > 1:
            proba = clf.predict_tta(images, n_augment=args.tta, return_proba=True)
        else:
            proba = clf.predict_proba(images)
        novelty = clf.novelty_score(images) if args.reject_unknown else None
        _write_predictions(files, proba, clf.classes_, args.format,
                           min(args.top_k, len(clf.classes_)), args.results, novelty,
                           clf.unknown_threshold_ if args.reject_unknown else None,
                           clf.multi_label_, clf.thresholds_)
    if bad:
        rest = "the others were predicted" if files else "nothing was predicted"
        raise CommandError(f"{len(bad)} of {len(files) + len(bad)} inputs could not be read "
                           f"(listed above); {rest}.")
    return 0


def _write_predictions(files, proba, classes, fmt: str, top_k: int, stream, novelty=None,
                       threshold=None, multi_label=False, thresholds=None) -> None:
    """One row per file; with ``novelty`` a ``novelty`` column too, and images above
    ``threshold`` labelled ``unknown``, with no probability (the class they would have had, and
    its probability, go in ``rejected_label`` and ``rejected_probability``). Multi-label rows
    list every class at or above its threshold (``label``: "a;b", ``probability``: theirs, in
    the same order)."""
    import numpy as np

    order = np.argsort(-proba, axis=1, kind="stable")[:, :top_k]
    rows = []
    for n, (path, p, best) in enumerate(zip(files, proba, order)):
        if multi_label:
            chosen = [j for j in np.argsort(-p, kind="stable") if p[j] >= thresholds[j]]
            label = ";".join(str(_plain(classes[j])) for j in chosen)
            probability = ";".join(f"{p[j]:.4f}" for j in chosen)
        else:
            label, probability = _plain(classes[best[0]]), float(p[best[0]])
        rows.append({"path": str(path), "label": label, "probability": probability,
                     "top_k": [{"label": _plain(classes[j]), "probability": float(p[j])} for j in best]})
        if novelty is not None:
            row = rows[-1]
            row["novelty"] = float(novelty[n])
            row["rejected_label"] = row["rejected_probability"] = None
            if novelty[n] > threshold:  # "unknown" has no probability: the rejected class's goes apart
                row["rejected_label"], row["rejected_probability"] = row["label"], row["probability"]
                row["label"], row["probability"] = "unknown", None
    if fmt == "json":
        for row in rows:
            if top_k == 1:
                del row["top_k"]
            if multi_label:
                row["labels"] = row.pop("label").split(";") if row["label"] != "unknown" else ["unknown"]
                joined = row.pop("probability") or ""  # None: rejected as unknown
                row["probabilities"] = [float(v) for v in joined.split(";") if v]
                if row.get("rejected_label") is not None:
                    row["rejected_label"] = row["rejected_label"].split(";")
                    row["rejected_probability"] = [float(v) for v in
                                                   row["rejected_probability"].split(";") if v]
        json.dump(rows, stream, indent=1)
        stream.write("\n")
        return
    header = ["path", "label", "probability"]
    for k in range(2, top_k + 1):
        header += [f"label_{k}", f"probability_{k}"]
    if novelty is not None:
        header += ["novelty", "rejected_label", "rejected_probability"]
    empty = "" if fmt == "csv" else "-"  # a table keeps its columns aligned

    def number(probability):
        if probability is None:
            return empty
        return probability if isinstance(probability, str) else f"{probability:.4f}"

    def cells(row):
        out = [row["path"], str(row["label"]), number(row["probability"])]
        for extra in row["top_k"][1:]:
            out += [str(extra["label"]), f"{extra['probability']:.4f}"]
        if novelty is not None:
            rejected = row["rejected_label"]
            out += [f"{row['novelty']:.3f}", empty if rejected is None else str(rejected),
                    number(row["rejected_probability"])]
        return out

    if fmt == "csv":
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(cells(r) for r in rows)
        return
    table = [header] + [cells(r) for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    for line in table:
        stream.write("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() + "\n")


def _count(n: int, noun: str) -> str:
    """'1 image', '2 images', '2 classes'."""
    return f"{n} {noun}{'' if n == 1 else 'es' if noun.endswith('s') else 's'}"


def _plain(value):
    """A numpy scalar label as a plain Python value (for JSON and printing)."""
    return value.item() if hasattr(value, "item") else value


def evaluate(args) -> int:
    _announce(args, f"loading {args.model}")
    clf = _load(args.model)
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
    args.emit("confusion matrix (rows: true, columns: predicted):")
    names = [str(c) for c in result["labels"]]
    width = max(max(map(len, names)), len(str(result["confusion_matrix"].max())))
    args.emit(" " * width + "  " + "  ".join(n.rjust(width) for n in names))
    for name, row in zip(names, result["confusion_matrix"]):
        args.emit(name.rjust(width) + "  " + "  ".join(str(v).rjust(width) for v in row))
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


def compare(args) -> int:
    _announce(args, f"reading the images in {args.data_dir}")
    from ..io import check_writable
    from ..selection import compare_backbones, format_rows

    backbones = None
    if args.backbones is not None:
        backbones = [b.strip() for b in args.backbones.split(",") if b.strip()]
        if not backbones:
            raise CommandError("--backbones needs at least one name, e.g. efficientnet_lite0,resnet18")
    from ..data.sources import read_class_folders
    _, labels = read_class_folders(args.data_dir)
    if labels is None:
        raise CommandError(f"{args.data_dir} has no class sub-folders: lay it out as "
                           "DATA_DIR/<class name>/<images>.")
    _check_two_classes(labels, args.data_dir, folder=True)
    if args.out:
        check_writable(args.out)
    rows = compare_backbones(args.data_dir, backbones=backbones, strategy=args.strategy, cv=args.cv,
                             image_size=args.image_size, random_state=args.seed,
                             verbose=args.verbose, refit=bool(args.out), show_table=False)
    args.emit(format_rows(rows, backbones_option="--backbones"))
    if args.out and rows.best_estimator_ is not None:
        out = rows.best_estimator_.save(args.out)
        args.emit(f"best: {rows.best}, fitted on all {len(rows.best_estimator_.classes_)}-class "
                  f"images and written to {out}")
    return 0


def demo(args) -> int:
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


def backbones(args) -> int:
    from ..models.zoo import BACKBONE_TABLE_HEADER, backbone_table, list_backbones  # no torch

    table = [BACKBONE_TABLE_HEADER] + backbone_table(list_backbones())
    if args.format == "markdown":
        args.emit("| " + " | ".join(table[0]) + " |")
        args.emit("|" + "---|" * len(table[0]))
        for row in table[1:]:
            args.emit("| " + " | ".join(row) + " |")
        return 0
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        args.emit("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    return 0
