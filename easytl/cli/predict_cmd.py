"""``easytl predict MODEL PATH...``: one row per image (table, CSV or JSON) on stdout."""

from __future__ import annotations

import csv
import json

from . import commands
from .arguments import _positive_int
from .commands import CommandError, _announce, _collect_images, _plain, _report_bad


def add_parser(command) -> None:
    """The ``predict`` sub-command (``command`` is build_parser's sub-command factory)."""
    predict = command("predict", run, "predict the class of image files",
                      "One row per image: path, label, probability (and the next top-k). PATHs are "
                      "image files or folders (searched recursively). Unreadable files are "
                      "reported on stderr and skipped; the exit code is then 1.",
                      ["easytl predict model.easytl new_photos/",
                       "easytl predict model.easytl a.jpg b.png --top-k 3 --format json",
                       "easytl predict model.easytl new_photos/ --format csv > predictions.csv",
                       "easytl predict model.easytl new_photos/ --reject-unknown"])
    predict.add_argument("model", metavar="MODEL")
    predict.add_argument("paths", metavar="PATH", nargs="+")
    predict.add_argument("--tta", type=_positive_int, default=1, help="test-time augmentation views")
    predict.add_argument("--format", default="table", choices=["table", "csv", "json"])
    predict.add_argument("--top-k", type=_positive_int, default=1)
    predict.add_argument("--reject-unknown", action="store_true",
                         help="label images unlike the training images 'unknown' and add their "
                              "novelty score to the output")


def run(args) -> int:
    _announce(args, f"loading {args.model}")
    clf = commands._load(args.model)  # looked up when called: tests give a model without a file
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
    rows = _prediction_rows(files, proba, classes, top_k, novelty, threshold, multi_label, thresholds)
    if fmt == "json":
        _write_json(rows, stream, top_k, multi_label)
    else:
        _write_text(rows, stream, fmt, top_k, novelty is not None)


def _prediction_rows(files, proba, classes, top_k, novelty, threshold, multi_label, thresholds):
    """One dict per file: path, label, probability, top_k (and novelty, rejected_*)."""
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
    return rows


def _write_json(rows, stream, top_k: int, multi_label: bool) -> None:
    """The rows as a JSON list; multi-label rows with ``labels`` and ``probabilities`` lists."""
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


def _write_text(rows, stream, fmt: str, top_k: int, with_novelty: bool) -> None:
    """The rows as CSV or as an aligned table (``-`` in the table's empty cells)."""
    header = ["path", "label", "probability"]
    for k in range(2, top_k + 1):
        header += [f"label_{k}", f"probability_{k}"]
    if with_novelty:
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
        if with_novelty:
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
