"""Hugging Face ``datasets`` as input: a ``datasets.Dataset`` with an image column, like a table.

``fit(ds, "label")``, ``predict(ds)``, ``report(ds)`` and
``compare_backbones(ds)`` take a dataset such as
``load_dataset("imagefolder", data_dir="photos/", split="train")``: images
from its ``Image`` column, labels from the column ``y`` names (default: its
first ``ClassLabel`` column, else one called "label", "labels", "class", ...).
``ClassLabel`` values become their names, so ``classes_`` and predictions are
the names. The images are not decoded by ``datasets``: each row's file (or
stored bytes) goes through easytl's own decoding, at the size the model needs
(:func:`easytl.data.images.decode_image`), in threads and once per fit.

``datasets`` stays optional (``pip install 'easytl[hf]'``): a dataset is
recognised by its type, and the package is imported only when one is given.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .images import EncodedImage
from .tables import LABEL_COLUMNS


def _is_type(X, package: str, name: str) -> bool:
    """Whether ``X``'s class (or a base) is ``name`` from ``package``, without importing it."""
    return any(cls.__name__ == name and (cls.__module__ + ".").startswith(package + ".")
               for cls in type(X).__mro__)


def is_hf_dataset(X) -> bool:
    """Whether ``X`` is a Hugging Face ``datasets`` dataset (a ``DatasetDict`` too: it gets a
    clear error in :func:`read_hf`), without importing ``datasets``."""
    return any(_is_type(X, "datasets", name)
               for name in ("Dataset", "DatasetDict", "IterableDataset", "IterableDatasetDict"))


class HFImages(Sequence):
    """The image column of a dataset as a sequence of paths or :class:`EncodedImage` (lazy:
    a row is read when asked for, so a dataset of stored images never sits in memory at once)."""

    def __init__(self, dataset, column: str):
        from datasets import Image
        self.column = column
        self.rows = dataset.select_columns([column]).cast_column(column, Image(decode=False))

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return _item(self.rows[int(index)][self.column], int(index))


def _item(cell, row: int):
    """A path for an image that is a local file, else its bytes (a dataset from the Hub)."""
    cell = cell or {}
    path, data = cell.get("path"), cell.get("bytes")
    if data is not None:
        return EncodedImage(data, f"{path or 'image'} (row {row})")
    if path:
        return Path(path)
    return EncodedImage(b"", f"row {row} (no image)")  # reported as unreadable by fit's check


def _image_column(dataset, name: str) -> str:
    from datasets import Image
    columns = [c for c, feature in dataset.features.items() if isinstance(feature, Image)]
    if not columns:
        raise ValueError(f"{name} has no image column (an Image feature); its features: "
                         f"{dict(dataset.features)}. Cast the column of image paths or bytes "
                         "with ds.cast_column(column, datasets.Image()).")
    return columns[0]


def _label_column(dataset, y, name: str) -> str | None:
    from datasets import ClassLabel
    if isinstance(y, str):
        if y not in dataset.column_names:
            raise ValueError(f"{name} has no label column {y!r}; its columns: {dataset.column_names}.")
        return y
    features = dataset.features
    class_labels = [c for c, feature in features.items() if isinstance(feature, ClassLabel)]
    if class_labels:
        return class_labels[0]
    lowered = {c.lower(): c for c in dataset.column_names}
    return next((lowered[c] for c in LABEL_COLUMNS if c in lowered), None)


def _labels(dataset, column: str):
    """The column's values; ``ClassLabel`` ids as their names (-1, "no label", as None), lists of
    labels (multi-label) as tuples."""
    from datasets import ClassLabel
    feature = dataset.features[column]
    values = list(dataset[column])
    inner = getattr(feature, "feature", None)  # a list of ClassLabel: multi-label
    if isinstance(feature, ClassLabel):
        values = [None if v is None or v < 0 else feature.int2str(int(v)) for v in values]
    elif isinstance(inner, ClassLabel):
        return [tuple(inner.int2str(int(v)) for v in row) for row in values]
    if values and isinstance(values[0], (list, tuple)):
        return [tuple(row) for row in values]
    return np.asarray(values, dtype=object if any(v is None for v in values) else None)


def read_hf(dataset, y=None, name: str = "X"):
    """The images of a ``datasets.Dataset`` (a lazy sequence of paths / encoded images) and its
    labels (None without a label column, or when ``y`` gives the labels themselves)."""
    if not _is_type(dataset, "datasets", "Dataset"):
        kind = type(dataset).__name__
        hint = (f"pick one split, e.g. {name}['train']" if "Dict" in kind
                else "load it without streaming=True (easytl needs its length and random access)")
        raise TypeError(f"{name} is a datasets.{kind}: {hint}.")
    images = HFImages(dataset, _image_column(dataset, name))
    column = _label_column(dataset, y, name) if y is None or isinstance(y, str) else None
    return images, (None if column is None else _labels(dataset, column))
