"""Several image sources as one: the training images of a fit and the unlabeled ones it pseudo-labeled."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from .sources import ImageSource, resize


class CombinedImages(ImageSource):
    """The images of ``parts`` one after the other (row ``i`` of part ``p`` at its offset).

    A subset keeps the parts and a list of (part, row) pairs, so it loads nothing.
    Setting ``size`` sets it on every part that has one (files are resized on load).
    Every image comes out at one shape, as a batch needs: a part of arrays whose
    shape differs from the others' is resized to ``size`` (or to the first part's shape).
    """

    def __init__(self, parts: Sequence[ImageSource], rows: np.ndarray | None = None):
        self.parts = list(parts)
        if rows is None:
            rows = np.concatenate([np.stack([np.full(len(p), k), np.arange(len(p))], axis=1)
                                   for k, p in enumerate(self.parts)]).astype(np.int64)
        self.rows = np.asarray(rows, dtype=np.int64).reshape(-1, 2)

    @property
    def size(self):
        sizes = [p.size for p in self.parts if hasattr(p, "size")]
        return sizes[0] if sizes else None

    @size.setter
    def size(self, value) -> None:
        for part in self.parts:
            if hasattr(part, "size"):
                part.size = value

    @property
    def decodes_files(self) -> bool:
        return any(getattr(p, "decodes_files", False) for p in self.parts)

    def __len__(self) -> int:
        return len(self.rows)

    def _shape(self) -> tuple[int, int]:
        if self.size is not None:
            return (int(self.size), int(self.size))
        first = self.parts[int(self.rows[0, 0])] if len(self.rows) else self.parts[0]
        return tuple(first.load(0).shape[-2:])

    def load(self, index: int) -> torch.Tensor:
        part, row = self.rows[index]
        image = self.parts[part].load(int(row))
        shape = self._shape()
        if tuple(image.shape[-2:]) != shape:
            image = resize(image[None], shape)[0]
        return image

    def __getitems__(self, indices: Sequence[int]) -> torch.Tensor:
        return torch.stack([self.load(int(i)) for i in indices])

    def subset(self, indices) -> "CombinedImages":
        return CombinedImages(self.parts, self.rows[np.asarray(indices, dtype=np.int64)])

    def native_size(self, index: int) -> tuple[int, int]:
        part, row = self.rows[index]
        return self.parts[part].native_size(int(row))


def combine(parts: Sequence[ImageSource]) -> ImageSource:
    """One source of the non-empty ``parts`` (the part itself when there is one)."""
    parts = [p for p in parts if p is not None and len(p)]
    return parts[0] if len(parts) == 1 else CombinedImages(parts)
