"""Labels as users give them, and back: one class per image, or a set of classes per image.

Multi-label ``y`` is recognised the way scikit-learn does: a 0/1 indicator
matrix (n_images, n_classes), or a sequence of label collections (lists,
tuples, sets: ``[("cat", "outdoor"), ("dog",), ()]``, then ``classes_`` is
the sorted union). ``predict`` answers in the same form as ``y`` was given.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FORMS = ("labels", "indicator", "sets")


def _is_collection(value) -> bool:
    return isinstance(value, (list, tuple, set, frozenset))


def as_label_array(y) -> np.ndarray:
    """``y`` as an array without mangling label collections: a list of tuples of equal length
    would otherwise become a 2-D array of strings."""
    if isinstance(y, (list, tuple)) and len(y) and any(_is_collection(v) for v in y):
        out = np.empty(len(y), dtype=object)
        for i, value in enumerate(y):
            out[i] = tuple(value) if _is_collection(value) else (value,)
        return out
    return np.asarray(y)


@dataclass
class Labels:
    """Encoded labels: class indices (n,), or an indicator matrix (n, k) when multi-label."""

    classes: np.ndarray
    encoded: np.ndarray
    multi_label: bool
    form: str

    def counts(self) -> np.ndarray:
        """Training images per class."""
        if self.multi_label:
            return self.encoded.sum(axis=0).astype(int)
        return np.bincount(self.encoded, minlength=len(self.classes))


def read_labels(y, multi_label="auto") -> Labels:
    """Detect and encode ``y``; ``multi_label=True`` forces the multi-label reading."""
    y = as_label_array(y)
    if y.ndim == 2:
        if not np.isin(y, (0, 1, True, False)).all():
            raise ValueError(f"y has shape {y.shape} but is not a 0/1 indicator matrix: a 2-D y means "
                             "multi-label, one column per class with 0 or 1 in it.")
        if multi_label is False:
            raise ValueError("y is a 2-D indicator matrix (multi-label) but multi_label=False.")
        return Labels(np.arange(y.shape[1]), y.astype(np.int64), True, "indicator")
    if y.dtype == object and len(y) and all(isinstance(v, tuple) for v in y):
        if multi_label is False:
            raise ValueError("y holds label collections (multi-label) but multi_label=False.")
        classes = np.array(sorted({c for labels in y for c in labels}, key=str))
        if not len(classes):
            raise ValueError("y holds only empty label sets: there is no class to learn.")
        return Labels(classes, encode_sets(y, classes, "y"), True, "sets")
    if multi_label is True:  # one label each, but to be learnt as independent yes/no decisions
        return read_labels([(v,) for v in y.tolist()], "auto")
    classes, encoded = np.unique(y, return_inverse=True)
    return Labels(classes, encoded.astype(np.int64), False, "labels")


def encode_sets(y, classes: np.ndarray, where: str) -> np.ndarray:
    """Label collections → an indicator matrix over ``classes``; unseen labels are an error."""
    index = {c: i for i, c in enumerate(classes.tolist())}
    out = np.zeros((len(y), len(classes)), dtype=np.int64)
    unseen = set()
    for row, labels in enumerate(y):
        for label in labels:
            if label in index:
                out[row, index[label]] = 1
            else:
                unseen.add(str(label))
    if unseen:
        raise ValueError(f"{where} has labels never seen in fit: {sorted(unseen)[:10]}; "
                         f"known classes: {classes.tolist()[:20]}.")
    return out


def encode_like(y, classes: np.ndarray, form: str, where: str) -> np.ndarray:
    """Encode ``y`` for a model fitted on ``form`` labels over ``classes``."""
    y = as_label_array(y)
    if form == "indicator":
        if y.ndim != 2 or y.shape[1] != len(classes):
            raise ValueError(f"{where} must be an indicator matrix with {len(classes)} columns, "
                             f"got shape {y.shape}.")
        return y.astype(np.int64)
    if form == "sets":
        return encode_sets([tuple(v) if _is_collection(v) else (v,) for v in y], classes, where)
    return encode(y, classes, where)


def decode(decisions: np.ndarray, classes: np.ndarray, form: str):
    """Decisions (class indices, or an indicator matrix) in the form ``y`` was given."""
    if form == "labels":
        return classes[decisions]
    if form == "indicator":
        return decisions.astype(np.int64)
    return [tuple(classes[np.flatnonzero(row)].tolist()) for row in decisions]


def encode(labels: np.ndarray, classes: np.ndarray, where: str) -> np.ndarray:
    """Labels as integer class indices; labels not among ``classes`` are an error."""
    index = {c: i for i, c in enumerate(classes.tolist())}
    unseen = sorted({str(v) for v in labels.tolist() if v not in index})
    if unseen:
        raise ValueError(f"{where} has labels never seen in fit: {unseen[:10]}; "
                         f"known classes: {classes.tolist()[:20]}.")
    return np.array([index[v] for v in labels.tolist()], dtype=np.int64)


def mark_unknown(labels, unknown: np.ndarray, classes: np.ndarray, multi_label: bool,
                 unknown_label="unknown"):
    """Decoded ``labels`` with ``unknown_label`` where ``unknown`` is True: an object array, or
    for multi-label a list of tuples (``(unknown_label,)`` for the rejected images)."""
    if multi_label:
        rows = labels if isinstance(labels, list) else [
            tuple(classes[np.flatnonzero(r)].tolist()) for r in labels]
        return [(unknown_label,) if u else row for row, u in zip(rows, unknown)]
    labels = labels.astype(object)
    labels[unknown] = unknown_label
    return labels
