"""The error report: one self-contained HTML file that shows what a model gets wrong and why.

``clf.report(X, y, html="report.html")`` (or ``easytl evaluate ... --html``)
writes accuracy, per-class precision / recall / F1, the confusion matrix,
calibration, the training history, the most-confused class pairs, the worst
errors of each class with Grad-CAM heatmaps, suspected label errors and,
given the training images, near-duplicates between training and test
images. Every picture is inlined (base64 PNG): the file opens from disk with
no network. :func:`analyse` returns the same findings as data.
"""

from __future__ import annotations

import base64
import html
import io
import os
from pathlib import Path

import numpy as np

from .thumbnails import Thumbnails

NEIGHBOURS = 5             # for suspected label errors
DUPLICATE_COSINE = 0.998   # features this alike between train and test images: a near-duplicate
WORST_PER_CLASS = 6


def evaluation(clf, X, y, n_augment: int = 1):
    """The figures of ``clf.report`` (see there) and the probabilities they came from."""
    from ..data.labels import encode_like
    encoded = encode_like(y, clf.classes_, getattr(clf, "_label_form", "labels"), "y")
    if n_augment == 1:
        logits = clf._run(X, lambda model, x: model(x).float())
        task = clf._task
        import torch
        raw = task.proba(torch.from_numpy(logits)).numpy()
        proba = task.proba(torch.from_numpy(logits), clf.temperature_).numpy()
    else:
        raw, proba = None, clf.predict_tta(X, n_augment, return_proba=True)
    if getattr(clf, "multi_label_", False):
        return _multi_label_figures(clf, encoded, raw, proba), proba
    from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, recall_score

    from ..training.metrics import balanced_accuracy
    from .statistics import expected_calibration_error, log_loss
    predictions = clf.classes_[proba.argmax(axis=1)]
    labels = clf.classes_
    present = np.isin(labels, np.asarray(y))
    recall = recall_score(y, predictions, labels=labels, average=None, zero_division=0)
    return {"accuracy": float(accuracy_score(y, predictions)),
            # rare classes weigh as much as common ones (classes absent from y are left out)
            "balanced_accuracy": balanced_accuracy(y, predictions, quiet=True),
            "recall": {c: float(r) for c, r, p in zip(labels.tolist(), recall, present) if p},
            "report": classification_report(y, predictions, labels=labels, zero_division=0,
                                            target_names=[str(c) for c in labels], digits=3),
            "confusion_matrix": confusion_matrix(y, predictions, labels=labels),
            "labels": labels.tolist(),
            "calibration": {
                "temperature": clf.temperature_,
                "ece_before": None if raw is None else expected_calibration_error(raw, encoded),
                "ece_after": expected_calibration_error(proba, encoded),
                "log_loss_before": None if raw is None else log_loss(raw, encoded),
                "log_loss_after": log_loss(proba, encoded)},
            "unknown": unknown_threshold_facts(clf)}, proba


def unknown_threshold_facts(clf) -> dict:
    """What ``reject_unknown`` rests on: the threshold, the promised rate, and how many
    held-out novelty scores (cross-fitted training and validation images) it is the
    conformal quantile of (None for model files from before easytl recorded it)."""
    return {"threshold": getattr(clf, "unknown_threshold_", None), "rate": clf.unknown_rate,
            "n_images": getattr(clf, "unknown_threshold_n_", None)}


def _threshold_note(clf) -> str:
    n = getattr(clf, "unknown_threshold_n_", None)
    rests = ("" if n is None else
             f" (the {1 - clf.unknown_rate:.0%} conformal quantile of {n} held-out scores)")
    return f", unknown threshold {clf.unknown_threshold_:.3g}{rests}"


def _binary_log_loss(proba: np.ndarray, truth: np.ndarray) -> float:
    p = np.clip(np.asarray(proba, dtype=np.float64), 1e-12, 1 - 1e-12)  # 1 - 1e-12 is 1 in float32
    return float(-np.mean(np.where(truth > 0, np.log(p), np.log(1 - p))))


def _multi_label_figures(clf, truth: np.ndarray, raw, proba: np.ndarray) -> dict:
    from sklearn.metrics import average_precision_score, classification_report, f1_score
    decided = clf._task.decide(proba, clf.thresholds_)
    names = [str(c) for c in clf.classes_]
    scored = truth.sum(axis=0) > 0  # average precision needs a positive example
    return {"accuracy": float(f1_score(truth, decided, average="samples", zero_division=1.0)),
            "f1_samples": float(f1_score(truth, decided, average="samples", zero_division=1.0)),
            "f1_micro": float(f1_score(truth, decided, average="micro", zero_division=0)),
            "f1_macro": float(f1_score(truth, decided, average="macro", zero_division=0)),
            "mean_average_precision": float(average_precision_score(
                truth[:, scored], proba[:, scored], average="macro")) if scored.any() else None,
            "report": classification_report(truth, decided, target_names=names, zero_division=0,
                                            digits=3),
            "labels": clf.classes_.tolist(), "thresholds": clf.thresholds_.tolist(),
            "calibration": {"temperature": np.asarray(clf.temperature_).tolist(),
                            "log_loss_before": None if raw is None else _binary_log_loss(raw, truth),
                            "log_loss_after": _binary_log_loss(proba, truth)},
            "unknown": unknown_threshold_facts(clf)}


def _temperature_note(clf) -> str:
    """Why the temperature is what it is: the fit's recorded decision (the last ``history_``
    row's ``calibration``, or ``plan_``'s), else what a model file from before it allows."""
    history = getattr(clf, "history_", None) or [{}]
    decision = (getattr(clf, "plan_", None) or {}).get("calibration") or history[-1].get("calibration")
    if decision:
        return ("fitted on the validation split, " if decision["kept"]
                else "not applied: ") + decision["reason"]
    if clf.temperature_ != 1.0:
        return "fitted on the validation split"
    return ("not fitted: calibrate=False, no validation split, or one without an error, which "
            "carries no evidence for a temperature")


def _unit(features: np.ndarray) -> np.ndarray:
    return features / np.clip(np.linalg.norm(features, axis=1, keepdims=True), 1e-12, None)


def analyse(clf, X, y, proba: np.ndarray, X_train=None, y_train=None) -> dict:
    """What the report shows, as data.

    Returns a dict: ``predictions`` (class indices), ``labels`` (class indices
    of ``y``), ``novelty`` (scores or None), ``confused_pairs`` [(true, predicted,
    count)], ``worst_errors`` {class index: [image indices]},
    ``suspected_label_errors`` [image indices] (given label ≠ prediction and ≠
    the majority label of the 5 nearest images in feature space) and
    ``near_duplicates`` [(test index, index of its most similar training image,
    cosine)] where that cosine is at least 0.998.
    """
    from ..data.labels import encode
    labels = encode(np.asarray(y), clf.classes_, "y")
    predictions = proba.argmax(axis=1)
    features = clf.transform(X)
    novelty = None if getattr(clf, "novelty_", None) is None else clf.novelty_.score(features)
    k = len(clf.classes_)
    counts = np.zeros((k, k), dtype=int)
    np.add.at(counts, (labels, predictions), 1)
    off = [(int(a), int(b), int(counts[a, b])) for a in range(k) for b in range(k)
           if a != b and counts[a, b] > 0]
    confused = sorted(off, key=lambda t: -t[2])[:5]
    worst = {}
    for c in range(k):
        wrong = np.flatnonzero((labels == c) & (predictions != c))
        worst[c] = wrong[np.argsort(-proba[wrong, predictions[wrong]])][:WORST_PER_CLASS].tolist()
    # Neighbours among the evaluated images (and the training images, when given).
    pool, pool_labels = _unit(features), labels
    train_features = None
    if X_train is not None:
        train_features = _unit(clf.transform(X_train))
        if y_train is not None:
            pool = np.vstack([pool, train_features])
            pool_labels = np.r_[labels, encode(np.asarray(y_train), clf.classes_, "y_train")]
    similarity = _unit(features) @ pool.T
    similarity[np.arange(len(labels)), np.arange(len(labels))] = -np.inf  # not yourself
    neighbours = np.argsort(-similarity, axis=1)[:, :NEIGHBOURS]
    majority = np.array([np.bincount(pool_labels[row], minlength=k).argmax() for row in neighbours])
    suspects = np.flatnonzero((predictions != labels) & (majority != labels))
    suspects = suspects[np.argsort(-proba[suspects, predictions[suspects]])].tolist()
    duplicates = []
    if train_features is not None:  # each test image against its most similar training image
        cosine = _unit(features) @ train_features.T
        nearest = cosine.argmax(axis=1)
        for i, j in enumerate(nearest):
            if cosine[i, j] >= DUPLICATE_COSINE:
                duplicates.append((i, int(j), float(cosine[i, j])))
        duplicates.sort(key=lambda t: -t[2])
    return {"predictions": predictions, "labels": labels, "novelty": novelty,
            "confused_pairs": confused, "worst_errors": worst,
            "suspected_label_errors": suspects, "near_duplicates": duplicates}


# --------------------------------------------------------------------------- names

def _file_paths(source) -> list[str | None]:
    """The absolute path of each image of ``source`` read from a file; None for the others."""
    items = getattr(source, "items", None)
    if not isinstance(items, (list, tuple)):  # arrays, or a Dataset (indexing it would decode)
        return [None] * len(source)
    positions = getattr(source, "positions", range(len(items)))
    return [os.path.abspath(items[p]) if isinstance(items[p], (str, os.PathLike)) else None
            for p in positions]


def image_names(X, source) -> list[str | None]:
    """How the page names each image of ``source`` (built from ``X``): the path of an image
    read from a file, relative to ``X`` when ``X`` is a folder, else to the folder the listed
    files share; None for an image that came from no file (an array), shown as its index."""
    paths = _file_paths(source)
    files = [p for p in paths if p is not None]
    if not files:
        return paths
    try:
        root = (os.path.abspath(X) if isinstance(X, (str, os.PathLike)) and Path(X).is_dir()
                else os.path.commonpath([os.path.dirname(f) for f in files]))
    except ValueError:  # files on different drives share no folder: keep their full paths
        return paths
    return [None if p is None else Path(os.path.relpath(p, root)).as_posix() for p in paths]


class _Names:
    """The names of one image set on the page: ``html(i)`` is the escaped path of image ``i``
    (its full path on hover) or ``#i``; ``text(i)`` the same, unescaped, for alt texts."""

    def __init__(self, X, source):
        self.names, self.paths = image_names(X, source), _file_paths(source)

    def text(self, i: int) -> str:
        return f"#{i}" if self.names[i] is None else self.names[i]

    def html(self, i: int) -> str:
        if self.names[i] is None:
            return f"#{i}"
        return (f'<span class="name" title="{html.escape(self.paths[i])}">'
                f"{html.escape(self.names[i])}</span>")


# --------------------------------------------------------------------------- pictures

def _png(image: np.ndarray) -> str:
    from PIL import Image
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def _figure_png(fig) -> str:
    import matplotlib.pyplot as plt
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def _img(data: str, alt: str, width: int | None = None) -> str:
    size = f' width="{width}"' if width else ""
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}"{size}>'


# --------------------------------------------------------------------------- the page

_STYLE = """body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ddd;padding:3px 8px;
text-align:right}th{background:#f4f4f4}.cm td{min-width:2.5em}.gallery{display:flex;
flex-wrap:wrap;gap:10px}.card{font-size:.8em;text-align:center;width:200px}
.card img{border:1px solid #999;margin:1px}.note{color:#666;font-size:.9em}
.name{font-family:monospace;overflow-wrap:anywhere}"""


def _table(header, rows) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _confusion_html(counts: np.ndarray, names: list[str]) -> str:
    peak = max(int(counts.max()), 1)
    rows = []
    for name, row in zip(names, counts):
        cells = [f'<td style="background:rgba(40,90,200,{0.08 + 0.8 * v / peak:.2f})">{v}</td>'
                 for v in row]
        rows.append(f"<tr><th>{html.escape(name)}</th>{''.join(cells)}</tr>")
    head = "".join(f"<th>{html.escape(n)}</th>" for n in names)
    return (f'<table class="cm"><tr><th>true \\ predicted</th>{head}</tr>{"".join(rows)}</table>')


def _one_epoch(row: dict) -> str:
    """A one-epoch history in words: '1 epoch (probe): train loss 0.936, accuracy 0.556; ...'."""
    text = (f"1 epoch ({html.escape(str(row.get('phase')))}): train loss {row['train_loss']:.3f}, "
            f"accuracy {row['train_accuracy']:.3f}")
    if row.get("val_loss") is not None:
        text += f"; validation loss {row['val_loss']:.3f}, accuracy {row['val_accuracy']:.3f}"
    return text


def write_html_report(clf, X, y, proba: np.ndarray, path, X_train=None, y_train=None) -> Path:
    """Write the report to ``path``; returns the path."""
    found = analyse(clf, X, y, proba, X_train, y_train)
    thumbs = Thumbnails(clf, X)
    page = _Page(clf, found, proba, thumbs, _Names(X, thumbs.source))
    parts = (_summary_html(page) + _calibration_html(page) + _history_html(clf)
             + _confused_html(page) + _worst_errors_html(page) + _suspects_html(page))
    if X_train is not None:
        parts += _duplicates_html(page, X_train)
    text = (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>easytl report"
            f"</title><style>{_STYLE}</style></head><body>{''.join(parts)}</body></html>")
    from ..io import atomic_file, check_writable
    check_writable(path)
    with atomic_file(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")
    return Path(path)


class _Page:
    """What every section of the page reads: the model, :func:`analyse`'s findings, the
    probabilities, the thumbnails and names of the evaluated images, the class names."""

    def __init__(self, clf, found: dict, proba: np.ndarray, thumbs: Thumbnails, name: _Names):
        self.clf, self.found, self.proba, self.thumbs, self.name = clf, found, proba, thumbs, name
        self.names = [str(c) for c in clf.classes_]
        self.labels, self.predictions = found["labels"], found["predictions"]
        self.novelty = found["novelty"]

    def card(self, i: int, caption: str) -> str:
        """Image ``i``'s thumbnail over its name and ``caption``."""
        return (f'<div class="card">{_img(_png(self.thumbs.image(i)), self.name.text(i))}<br>'
                f"{self.name.html(i)}{caption}</div>")


def _summary_html(page: _Page) -> list[str]:
    """The title, the model in one line, per-class figures and the confusion matrix."""
    from sklearn.metrics import precision_recall_fscore_support
    clf, names, labels, predictions = page.clf, page.names, page.labels, page.predictions
    k = len(names)
    counts = np.zeros((k, k), dtype=int)
    np.add.at(counts, (labels, predictions), 1)
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predictions, labels=np.arange(k), zero_division=0)
    accuracy = float((labels == predictions).mean())
    return [f"<h1>easytl report: accuracy {accuracy:.3f} on {len(labels)} images</h1>",
            f'<p class="note">backbone {html.escape(clf.model_.backbone.name)}, input '
            f"{clf.image_size_} px, {k} classes, temperature {clf.temperature_:.3g}"
            + ("" if page.novelty is None else _threshold_note(clf))
            + "</p>", "<h2>Per class</h2>",
            _table(["class", "precision", "recall", "F1", "images"],
                   [(html.escape(n), f"{p:.3f}", f"{r:.3f}", f"{f:.3f}", int(s))
                    for n, p, r, f, s in zip(names, precision, recall, f1, support)]),
            "<h2>Confusion matrix</h2>", _confusion_html(counts, names)]


def _calibration_html(page: _Page) -> list[str]:
    from ..plots import plot_reliability
    from .statistics import expected_calibration_error
    ece = expected_calibration_error(page.proba, page.labels)
    return ["<h2>Calibration</h2>",
            f"<p>expected calibration error (15 bins): {ece:.4f}; temperature "
            f"{page.clf.temperature_:.3g} ({html.escape(_temperature_note(page.clf))})</p>",
            _img(_figure_png(plot_reliability(page.proba, page.labels)), "reliability diagram", 420)]


def _history_html(clf) -> list[str]:
    from ..plots import plot_history
    history = getattr(clf, "history_", None) or []
    if len(history) > 1:
        return ["<h2>Training history</h2>", _img(_figure_png(plot_history(clf)), "history", 900)]
    if history:  # one epoch (a fit that stopped after the probe): its figures, not empty panels
        return ["<h2>Training history</h2>", f"<p>{_one_epoch(history[0])}</p>"]
    return []


def _confused_html(page: _Page) -> list[str]:
    parts = ["<h2>Most-confused class pairs</h2>"]
    if not page.found["confused_pairs"]:
        parts.append("<p>No image was confused.</p>")
    for true, pred, count in page.found["confused_pairs"]:
        shown = np.flatnonzero((page.labels == true) & (page.predictions == pred))[:6]
        pictures = "".join(page.card(i, "") for i in shown)
        plural = "" if count == 1 else "s"
        parts.append(f"<p><b>{html.escape(page.names[true])}</b> taken for <b>"
                     f"{html.escape(page.names[pred])}</b>: {count} image{plural}</p>"
                     f'<div class="gallery">{pictures}</div>')
    return parts


def _worst_errors_html(page: _Page) -> list[str]:
    """Per class, its most confident errors, each beside a Grad-CAM of the predicted class."""
    names, predictions, name = page.names, page.predictions, page.name
    parts = []
    if any(page.found["worst_errors"].values()):  # no heading over nothing when no image is wrong
        parts.append("<h2>Worst errors per class</h2>"
                     '<p class="note">image, then Grad-CAM of the predicted class on it</p>')
    for c, indices in page.found["worst_errors"].items():
        if not indices:
            continue
        cams = page.thumbs.heatmaps(indices, predictions[indices])
        cards = []
        for i, cam in zip(indices, cams):
            score = "" if page.novelty is None else f", novelty {page.novelty[i]:.2f}"
            cards.append(f'<div class="card">{_img(_png(page.thumbs.image(i)), name.text(i))}'
                         f'{_img(_png(cam), f"Grad-CAM {name.text(i)}")}<br>{name.html(i)}: '
                         f"{html.escape(names[c])} → "
                         f"{html.escape(names[predictions[i]])} ({page.proba[i, predictions[i]]:.2f}"
                         f"{score})</div>")
        parts.append(f"<h3>{html.escape(names[c])}</h3><div class=\"gallery\">{''.join(cards)}</div>")
    return parts


def _suspects_html(page: _Page) -> list[str]:
    names, labels, predictions = page.names, page.labels, page.predictions
    suspects = page.found["suspected_label_errors"][:24]
    return ["<h2>Suspected label errors</h2>"
            f'<p class="note">the given label disagrees with the model and with most of the '
            f"{NEIGHBOURS} most similar images</p>",
            "<p>None found.</p>" if not suspects else '<div class="gallery">' + "".join(
                page.card(i, f": labelled {html.escape(names[labels[i]])}, looks like "
                             f"{html.escape(names[predictions[i]])}") for i in suspects) + "</div>"]


def _duplicates_html(page: _Page, X_train) -> list[str]:
    """Test images nearly identical to a training image, side by side."""
    thumbs, name = page.thumbs, page.name
    duplicates = page.found["near_duplicates"][:24]
    train_thumbs = Thumbnails(page.clf, X_train)
    train_name = _Names(X_train, train_thumbs.source)
    return ["<h2>Near-duplicates between training and test images</h2>"
            f'<p class="note">feature cosine ≥ {DUPLICATE_COSINE}: a test image this close '
            "to a training image measures memory, not generalisation</p>",
            "<p>None found.</p>" if not duplicates else '<div class="gallery">' + "".join(
                f'<div class="card">{_img(_png(thumbs.image(i)), f"test {name.text(i)}")}'
                f'{_img(_png(train_thumbs.image(j)), f"train {train_name.text(j)}")}<br>test '
                f"{name.html(i)} ~ train {train_name.html(j)} "
                f"({cos:.4f})</div>" for i, j, cos in duplicates) + "</div>"]
