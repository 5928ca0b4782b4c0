"""The data ``fit`` trains on: read, checked, labels encoded, split for validation.

Everything here happens before any model exists, so bad input fails fast and
costs no training time.
"""

from __future__ import annotations

import numbers
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..constants import DEFAULT_CACHE_MEMORY, parse_bytes
from .decoded import decode_once
from .images import DRAFT_MARGIN, UnreadableImagesError, describe_unreadable
from .sources import ImageSource, ListImages, as_image_source


def placeholder_size(image_size) -> int:
    """A size for reading ``X`` before the real one is chosen (it is set once it is)."""
    integer = isinstance(image_size, numbers.Integral) and not isinstance(image_size, bool)
    return int(image_size) if integer else 224


def read_labelled(X, y, image_size, name: str = "X"):
    """``X`` and ``y`` as an image source and a label array (labels from folders or a Dataset
    when ``y`` is None), with a clear error when there are none."""
    if isinstance(X, (str, os.PathLike)) and Path(X).is_file():
        raise ValueError(f"{name} is a single file ({X}); fit needs many labelled images: a folder "
                         "with one sub-folder per class, a list of image paths with y, or an array.")
    source, labels = as_image_source(X, y, size=placeholder_size(image_size), name=name)
    return source, labels


def drop_unreadable(source: ImageSource, labels, on_bad_image: str, verbose: int, name: str = "X",
                    memory=DEFAULT_CACHE_MEMORY, directory=None):
    """Decode every image file once; raise on bad ones, or leave them out (with a warning).

    The decoded images are kept for the rest of the fit (``source.store``, see
    :mod:`easytl.data.decoded`), at most :data:`~easytl.data.images.DRAFT_MARGIN`
    × ``source.size`` px a side (the largest input size the fit may use when
    ``image_size`` is "auto"), in RAM up to ``memory`` bytes, beyond it in a
    temporary file in ``directory``.

    Returns the source, its labels, the positions in ``X`` that were kept, and the
    ``(path, reason)`` pairs left out.
    """
    kept = np.arange(len(source))
    if not (isinstance(source, ListImages) and source.decodes_files) or source.store is not None:
        return source, labels, kept, []  # nothing to decode, or decoded once already
    store, bad_items = decode_once(source.items, int(DRAFT_MARGIN * source.size),
                                   parse_bytes(memory, "cache_memory"), directory, verbose,
                                   positions=source.positions)
    source = ListImages(source.items, source.size, source.load_item, source.positions, store)
    bad = [(item, reason) for _, item, reason in bad_items]
    if not bad:
        return source, labels, kept, []
    if on_bad_image == "error" or len(bad) == len(source):
        raise UnreadableImagesError(
            f"{len(bad)} of {len(source)} image files in {name} cannot be read:\n"
            f"{describe_unreadable(bad)}\nRemove or re-save them, or pass "
            "on_bad_image='skip' to leave them out.", bad)
    bad_indices = {index for index, _, _ in bad_items}
    kept = np.array([i for i in range(len(source)) if i not in bad_indices])
    warnings.warn(f"left out {len(bad)} unreadable image files:\n{describe_unreadable(bad)}",
                  stacklevel=4)
    return source.subset(kept), (None if labels is None else labels[kept]), kept, bad


@dataclass
class Split:
    """Training and validation parts; ``val_positions`` index the source they came from."""

    train: ImageSource
    train_y: np.ndarray
    val: ImageSource | None = None
    val_y: np.ndarray | None = None
    val_positions: np.ndarray | None = None


def stratified_split(source: ImageSource, y_encoded: np.ndarray, n_classes: int, val_size,
                     seed: int) -> Split:
    """Hold out ``val_size`` (a fraction, raised to one image per class, or a count), stratified
    (multi-label: a plain random split, as scikit-learn cannot stratify label sets)."""
    from sklearn.model_selection import train_test_split
    n = len(y_encoded)
    if val_size == 0:
        return Split(source, y_encoded)
    if y_encoded.ndim == 2:
        n_val = val_size if val_size >= 1 else max(1, int(np.ceil(val_size * n)))
        if n - n_val < 1:
            raise ValueError(f"val_size={val_size} leaves no training image of {n}.")
        train_idx, val_idx = train_test_split(np.arange(n), test_size=int(n_val), random_state=seed)
        return Split(source.subset(train_idx), y_encoded[train_idx], source.subset(val_idx),
                     y_encoded[val_idx], val_idx)
    n_val = val_size if val_size >= 1 else int(np.ceil(val_size * n))
    if val_size < 1:
        # A stratified hold-out needs one image per class: small data sets get that minimum.
        n_val = max(n_val, n_classes)
    counts = np.bincount(y_encoded, minlength=n_classes)
    if n_val < n_classes or n - n_val < n_classes or counts.min() < 2:
        raise ValueError(
            f"val_size={val_size} cannot hold out a stratified validation set from {n} "
            f"images in {n_classes} classes (smallest class: {counts.min()} images): every "
            "class needs an image on both sides. Use more images, val_size=0, or pass X_val/y_val.")
    train_idx, val_idx = train_test_split(np.arange(n), test_size=int(n_val), stratify=y_encoded,
                                          random_state=seed)
    return Split(source.subset(train_idx), y_encoded[train_idx], source.subset(val_idx),
                 y_encoded[val_idx], val_idx)
