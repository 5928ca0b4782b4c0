"""The data of one fit, prepared in one place: read, checked, labelled, de-duplicated, split.

``fit(X, y, X_val, y_val, X_unlabeled)`` accepts every form of input
(:func:`~easytl.data.sources.as_image_source`), tables included. Everything
that turns those into what the trainer needs happens here, in this order:

1. ``X`` (a table's rows first, then its files) is read and every file decoded
   once; unreadable ones raise or, with ``on_bad_image="skip"``, are left out.
   :attr:`PreparedData.positions` remembers where each image that is left
   stands in ``X`` as given, so that ``validation_indices_`` name rows of the
   caller's own ``X`` (a table's rows, a list's items).
2. Images whose label is ``unlabeled_label`` (only when that parameter is set:
   ``-1`` is an ordinary class otherwise) leave the labelled images.
3. ``X_val`` is read the same way; ``X_unlabeled`` too, without the images that
   are labelled images of ``X`` or ``X_val`` (the same file, or the same pixels):
   a validation image must never come back as a pseudo-labelled training image.
4. The labels are encoded (:func:`~easytl.data.labels.read_labels`) and checked: classes
   that look like typos of another (``cta`` or ``Cat`` beside many ``cat``) and classes of
   one image are named in a warning (:mod:`easytl.data.checks`), and first in the split's
   error when they make it fail. Images far smaller than the model's input size are named
   too: against ``image_size`` when it is given, else against the smallest size "auto"
   chooses, and at the chosen size once the plan has chosen it
   (:meth:`PreparedData.check_input_size`).
5. :meth:`PreparedData.split` holds out the validation images (stratified), once
   the plan has said how many: the result is a :class:`FitData`.

Everything here happens before any model exists, so bad input fails fast.
"""

from __future__ import annotations

import hashlib
import numbers
import os
import warnings
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from .checks import ImageSides, label_findings, split_advice, warn_labels
from .combined import combine
from .labels import Labels, encode_like, read_labels
from .sources import ArrayImages, ImageSource, ListImages, as_image_source
from .split import drop_unreadable, placeholder_size, read_labelled, stratified_split
from .tables import is_table, read_table


@dataclass(frozen=True)
class ReadOptions:
    """The estimator parameters and ``fit`` arguments that say how to read the data."""

    image_size: object = "auto"
    on_bad_image: str = "error"
    verbose: int = 1
    cache_memory: object = "2GB"
    cache_dir: object = None
    multi_label: object = "auto"
    unlabeled_label: object = None
    root: object = None
    path_column: object = None
    label_delim: object = None

    @property
    def table_options(self) -> dict:
        """How later tables (X_val, predict, report) are read: the way fit's was."""
        return {"root": self.root, "path_column": self.path_column, "label_delim": self.label_delim}


@dataclass
class FitData:
    """What the trainer trains on: encoded labels, split for validation."""

    train: ImageSource
    train_y: np.ndarray
    val: ImageSource | None
    val_y: np.ndarray | None
    unlabeled: ImageSource | None
    labels: Labels                          # classes, encoding, multi-label or not
    validation_indices: np.ndarray | None   # positions in X as given (None: X_val, or no hold-out)
    skipped: list = field(default_factory=list)   # (path, reason) left out by on_bad_image="skip"

    def with_training(self, train: ImageSource, train_y: np.ndarray) -> "FitData":
        """The same data with another training part (pseudo-labelled images added)."""
        return replace(self, train=train, train_y=train_y)

    def digest(self) -> str:
        """A digest of the images and labels (what a resumed fit must find unchanged)."""
        h = hashlib.sha1()
        for part, labels in ((self.train, self.train_y), (self.val, self.val_y),
                             (self.unlabeled, None)):
            if part is not None:
                h.update(_source_digest(part).encode())
                if labels is not None:
                    h.update(np.ascontiguousarray(labels).tobytes())
        return h.hexdigest()[:16]


@dataclass
class PreparedData:
    """``X`` (labelled), ``X_val`` and ``X_unlabeled``, read and checked, not yet split."""

    source: ImageSource
    labels: Labels
    positions: np.ndarray           # of each image of source in X as given
    val: ImageSource | None
    val_y: np.ndarray | None
    unlabeled: ImageSource | None
    skipped: list
    findings: list = field(default_factory=list)      # classes that look like label mistakes
    image_sides: list = field(default_factory=list)   # ImageSides of X, X_val, X_unlabeled

    @property
    def classes(self) -> np.ndarray:
        return self.labels.classes

    def split(self, val_size, seed: int) -> FitData:
        """Hold out ``val_size`` of the labelled images (none when ``X_val`` was given)."""
        if self.val is not None:
            return FitData(self.source, self.labels.encoded, self.val, self.val_y, self.unlabeled,
                           self.labels, None, self.skipped)
        try:
            split = stratified_split(self.source, self.labels.encoded, len(self.classes), val_size,
                                     seed)
        except ValueError as exc:  # a class of one image: a typo is likelier than val_size
            raise ValueError(split_advice(self.findings, exc)) from None
        indices = None if split.val_positions is None else self.positions[split.val_positions]
        return FitData(split.train, split.train_y, split.val, split.val_y, self.unlabeled,
                       self.labels, indices, self.skipped)

    def check_input_size(self, size: int) -> None:
        """Warn of the images far smaller than the input ``size`` the plan chose (those
        ``prepare`` named against a smaller size are not named again)."""
        for sides in self.image_sides:
            sides.warn(size)


def prepare(X, y=None, X_val=None, y_val=None, X_unlabeled=None, *,
            options: ReadOptions) -> PreparedData:
    """Read ``X``, ``X_val`` and ``X_unlabeled`` for a fit (see the module docstring)."""
    source, labels, positions, skipped, sides = _read(X, y, options, "X")
    if labels is None:
        raise ValueError("y is required: pass labels, a directory with one sub-folder per "
                         "class, a table, or a Dataset yielding (image, label).")
    marked = unlabeled_mask(labels, options.unlabeled_label)
    _check_marks(labels, options, given_unlabeled=X_unlabeled is not None)
    unlabeled_parts = []  # (name, images)
    if marked is not None:
        unlabeled_parts.append((f"images of X labelled {options.unlabeled_label!r}",
                                source.subset(np.flatnonzero(marked))))
        keep = np.flatnonzero(~marked)
        source, labels, positions = source.subset(keep), labeled_part(labels, marked), positions[keep]
    info = read_labels(labels, options.multi_label)
    if len(info.classes) < (1 if info.multi_label else 2):
        raise ValueError(f"y holds a single class ('{info.classes[0]}'); a classifier needs "
                         "at least 2 classes.")
    findings = label_findings(info.classes, info.counts())
    warn_labels(findings)
    val, val_y = None, None
    if X_val is not None:
        val, val_labels, _, bad, val_sides = _read(X_val, y_val, options, "X_val")
        skipped += bad
        sides += val_sides
        if val_labels is None:
            raise ValueError("y_val is required with X_val (unless X_val is a class folder).")
        val_y = encode_like(val_labels, info.classes, info.form, "y_val")
    if X_unlabeled is not None:
        extra, _, _, bad, extra_sides = _read(X_unlabeled, None, options, "X_unlabeled",
                                              labelled=False)
        skipped += bad
        sides += extra_sides
        unlabeled_parts.append(("X_unlabeled", extra))
    labelled = [source] + ([val] if val is not None else [])
    known = _KnownImages(labelled)
    unlabeled_parts = [_without(part, known, name) for name, part in unlabeled_parts]
    unlabeled_parts = [part for part in unlabeled_parts if part is not None and len(part)]
    if unlabeled_parts and info.multi_label:
        raise ValueError("X_unlabeled (and unlabeled_label in y) are for single-label data; a "
                         "multi-label fit cannot use unlabeled images.")
    unlabeled = combine(unlabeled_parts) if unlabeled_parts else None
    if unlabeled is None and X_unlabeled is not None:
        unlabeled = ArrayImages(torch.zeros((0, 3, 1, 1), dtype=torch.uint8))  # none left: said
    elif marked is not None and unlabeled is None:
        raise ValueError("every image labelled unlabeled_label is a labeled image of X or X_val "
                         "too: there is no unlabeled image left.")
    size, chosen = _first_check_size(options.image_size)
    for part in sides:
        part.warn(size, at_least=not chosen)
    return PreparedData(source, info, positions, val, val_y, unlabeled, skipped, findings, sides)


def _read(X, y, options: ReadOptions, name: str, labelled: bool = True):
    """One of fit's inputs as (source, labels, positions in X as given, skipped (path, reason),
    [its ImageSides] or [] where its sizes cannot be read without decoding)."""
    rows, table_skips = None, []
    if is_table(X):
        X, y, table_skips, rows = read_table(X, None if not labelled else y, options.root,
                                             options.path_column, options.label_delim,
                                             options.on_bad_image, with_rows=True)
        X = [str(p) for p in X]
    if labelled:
        source, labels = read_labelled(X, y, options.image_size, name=name)
    else:
        source, _ = as_image_source(X, None, name=name, size=placeholder_size(options.image_size))
        labels = None
    decoded_here = getattr(source, "store", None) is None  # then the store keeps native sizes
    source, labels, kept, bad = drop_unreadable(source, labels, options.on_bad_image,
                                                options.verbose, name, memory=options.cache_memory,
                                                directory=options.cache_dir)
    positions = np.asarray(kept if rows is None else np.asarray(rows)[kept], dtype=np.int64)
    skipped = [(path, reason) for _, path, reason in table_skips] + bad
    sides = ImageSides.of(source, name, positions, use_store=decoded_here)
    return source, labels, positions, skipped, [] if sides is None else [sides]


def _first_check_size(image_size) -> tuple[int, bool]:
    """The input size images are checked against before the plan, and whether it is the one
    the plan takes: ``image_size`` when given, else the smallest the plan chooses (so that
    nothing is named that the plan's size would not name)."""
    from ..training.adaptive import MIN_SIZE
    if isinstance(image_size, numbers.Integral) and not isinstance(image_size, bool):
        return int(image_size), True
    return MIN_SIZE, False


# ------------------------------------------------------------------------ unlabeled marks
def unlabeled_mask(labels, unlabeled_label=None) -> np.ndarray | None:
    """Which labels are ``unlabeled_label`` (None: no label marks an unlabeled image)."""
    if unlabeled_label is None:
        return None
    labels = np.asarray(labels, dtype=object) if not isinstance(labels, np.ndarray) else labels
    if labels.ndim != 1 or not len(labels):
        return None
    mask = np.array([_same(value, unlabeled_label) for value in labels.tolist()], dtype=bool)
    if not mask.any():
        warnings.warn(f"unlabeled_label={unlabeled_label!r} marks no image of y: every image is "
                      "trained with its label.", stacklevel=4)
    if mask.all():
        raise ValueError(f"every label in y is unlabeled_label={unlabeled_label!r}: at least "
                         "some images need a label.")
    return mask if mask.any() else None


def _same(value, mark) -> bool:
    """Whether a label is the mark (a table's cells are text: "-1" is the mark -1 there)."""
    if isinstance(value, (tuple, list)):
        return False
    if isinstance(value, str) and not isinstance(mark, str):
        return value.strip() == str(mark)
    try:
        return bool(value == mark) and type(value) is not bool
    except (TypeError, ValueError):
        return False


def labeled_part(labels, mask: np.ndarray) -> np.ndarray:
    """The labels not marked unlabeled, typed as if only they had been given."""
    kept = np.asarray(labels)[~mask]
    if kept.dtype == object and len(kept) and not any(isinstance(v, (tuple, list)) for v in kept):
        return np.asarray(kept.tolist())
    return kept


def _check_marks(labels, options: ReadOptions, given_unlabeled: bool) -> None:
    """None labels name the fix; a -1 class beside X_unlabeled is trained as a class, and said."""
    array = np.asarray(labels) if not isinstance(labels, list) else np.asarray(labels, dtype=object)
    if array.ndim != 1:
        return
    if array.dtype == object:
        missing = sum(value is None for value in array.tolist())
        if missing and options.unlabeled_label is not None:
            raise ValueError(f"{missing} labels in y are None: with unlabeled_label="
                             f"{options.unlabeled_label!r}, mark unlabeled images with that value.")
        if missing:
            raise ValueError(f"{missing} labels in y are None. Give images without a label as "
                             "X_unlabeled, or mark them with one value and name it, e.g. "
                             "y[y == None] = -1 and unlabeled_label=-1.")
    if (given_unlabeled and options.unlabeled_label is None and array.dtype.kind in "iu"
            and np.any(array == -1)):
        warnings.warn(f"{int(np.sum(array == -1))} labels in y are -1: -1 is trained as a class. "
                      "If it marks images without a label, pass unlabeled_label=-1.", stacklevel=4)


# ------------------------------------------------------------------------ de-duplication
class _KnownImages:
    """The identities of the labelled images, computed once, when first asked for."""

    def __init__(self, labelled: list):
        self.labelled, self._keys = labelled, None

    def __contains__(self, key) -> bool:
        if self._keys is None:
            self._keys = set().union(*(_identities(part) or () for part in self.labelled))
        return key in self._keys


def _without(unlabeled: ImageSource, known: _KnownImages, name: str) -> ImageSource | None:
    """``unlabeled`` without the images that are labelled images too (the same file, or the
    same pixels): ``--unlabeled pool/`` over the folder a label table points into."""
    mine = _identities(unlabeled)
    if mine is None:
        return unlabeled
    keep = [i for i, key in enumerate(mine) if key not in known]
    if len(keep) == len(mine):
        return unlabeled
    what = "files" if isinstance(unlabeled, ListImages) else "images"
    warnings.warn(f"{name}: left out {len(mine) - len(keep)} {what} that are labeled "
                  f"images of X or X_val{'; no unlabeled image is left' if not keep else ''}",
                  stacklevel=4)
    return unlabeled.subset(keep) if keep else None


def _identities(source: ImageSource) -> list | None:
    """A key per image that two sources share when they hold the same image: the absolute path
    of a file, a digest of the pixels of an array; None for other sources."""
    if isinstance(source, ArrayImages):
        images = source.images
        return ["px:" + hashlib.sha1(images[i].numpy().tobytes()).hexdigest()
                for i in range(len(images))]
    items, positions = getattr(source, "items", None), getattr(source, "positions", None)
    if items is None or positions is None:
        return None
    return [("file:" + os.path.abspath(items[p])) if isinstance(items[p], (str, os.PathLike))
            else f"item:{id(items)}:{p}" for p in positions]


def _source_digest(source: ImageSource) -> str:
    """Files: paths, sizes and modification times; arrays: the pixels; else the count."""
    h = hashlib.sha1(str(len(source)).encode())
    for part in getattr(source, "parts", ()):  # combined sources: each part, then the rows
        h.update(_source_digest(part).encode())
    if getattr(source, "rows", None) is not None:
        h.update(np.ascontiguousarray(source.rows).tobytes())
    if isinstance(source, ArrayImages):
        h.update(source.images.numpy().tobytes())
        return h.hexdigest()
    items, positions = getattr(source, "items", None), getattr(source, "positions", None)
    if items is not None and positions is not None:
        for p in positions:
            item = items[p]
            if isinstance(item, (str, os.PathLike)):
                stat = os.stat(item)
                h.update(f"{os.path.abspath(item)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return h.hexdigest()
