"""Turn any supported ``X`` into an indexable source of uint8 images, and sources into batches.

Images stay uint8 (the smallest exact form) until a batch reaches the
training device; there :mod:`easytl.data.augment` resizes, augments and
normalises it as one tensor.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler

from .images import (DRAFT_MARGIN, IMAGE_EXTENSIONS, EncodedImage, _array_to_uint8_nchw,
                     decode_threads, open_image, read_image_file, to_uint8_chw)


# --------------------------------------------------------------------------- image collections


class ImageSource(Dataset):
    """Indexable images: ``source[indices] -> uint8 (n, 3, H, W)``; all images share one size."""

    def __len__(self) -> int:
        raise NotImplementedError

    def load(self, index: int) -> torch.Tensor:
        raise NotImplementedError

    def __getitems__(self, indices: Sequence[int]) -> torch.Tensor:
        return torch.stack([self.load(int(i)) for i in indices])

    def subset(self, indices) -> "ImageSource":
        """The images at ``indices`` as a new source (nothing is decoded here)."""
        raise NotImplementedError

    def native_size(self, index: int) -> tuple[int, int]:
        """(height, width) of image ``index`` as given, before any resizing."""
        raise NotImplementedError

    def at_size(self, size: int) -> "ImageSource":
        """The same images, loaded at ``size`` where the source resizes on load."""
        return self


class ArrayImages(ImageSource):
    """Images already in memory as one uint8 tensor (N, 3, H, W)."""

    def __init__(self, images: torch.Tensor):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def load(self, index: int) -> torch.Tensor:
        return self.images[index]

    def __getitems__(self, indices: Sequence[int]) -> torch.Tensor:
        return self.images[torch.as_tensor(indices, dtype=torch.long)]

    def subset(self, indices) -> "ArrayImages":
        return ArrayImages(self.images[torch.as_tensor(indices, dtype=torch.long)])

    def native_size(self, index: int) -> tuple[int, int]:
        return tuple(self.images.shape[-2:])


class ListImages(ImageSource):
    """Images that may differ in size (files, PIL images, a Dataset), resized to ``size`` on load.

    Items are loaded only when a batch needs them, so a folder never has to fit
    in memory. Image files (and encoded images) are decoded at the size the
    model needs (:data:`~easytl.data.images.DRAFT_MARGIN` × ``size``, see
    :func:`~easytl.data.images.decode_image`), or read from ``store`` when fit
    decoded them once already (:mod:`easytl.data.decoded`). A subset keeps the
    same items, store and a list of positions, so it loads nothing either.
    """

    def __init__(self, items: Sequence, size: int, load_item: Callable = None,
                 positions: Sequence[int] | None = None, store=None):
        self.items = items
        self.size = size
        self.load_item = _convert if load_item is None else load_item
        self.positions = list(range(len(items))) if positions is None else list(positions)
        self.store = store

    @property
    def decodes_files(self) -> bool:
        """Whether loading decodes image files (or encoded images): the work worth threads."""
        return self.load_item is read_image_file

    def __len__(self) -> int:
        return len(self.positions)

    def load(self, index: int) -> torch.Tensor:
        position = self.positions[index]
        image = None
        if self.store is not None and self.size <= self.store.side:
            image = self.store.get(position)
        if image is None:
            image = self.load_item(self.items[position], min_side=int(DRAFT_MARGIN * self.size))
        if tuple(image.shape[-2:]) != (self.size, self.size):
            image = resize(image[None], self.size)[0]
        return image

    def subset(self, indices) -> "ListImages":
        return ListImages(self.items, self.size, self.load_item,
                          [self.positions[int(i)] for i in indices], self.store)

    def at_size(self, size: int) -> "ListImages":
        return self if size == self.size else ListImages(self.items, size, self.load_item,
                                                         self.positions, self.store)

    def native_size(self, index: int) -> tuple[int, int]:
        item = self.items[self.positions[index]]
        if isinstance(item, (str, os.PathLike, EncodedImage)):
            with open_image(item) as image:  # reads the header only
                width, height = image.size
            return height, width
        if isinstance(item, torch.Tensor):  # converted on arrival: (3, H, W)
            return tuple(item.shape[-2:])
        return tuple(self.load_item(item).shape[-2:])  # a Dataset item: decoded


# Loaders of ListImages items: module-level functions (DataLoader workers pickle them) that
# take the item and ``min_side``, the side a file may be decoded down to.

def _convert(image, min_side: int | None = None) -> torch.Tensor:
    return to_uint8_chw(image)


def _as_is(image: torch.Tensor, min_side: int | None = None) -> torch.Tensor:
    """The loader of images converted on arrival."""
    return image


def _dataset_image(item, min_side: int | None = None) -> torch.Tensor:
    image = item[0] if isinstance(item, (tuple, list)) else item
    return to_uint8_chw(image, where="a Dataset item")


def _dataset_labels(dataset) -> np.ndarray | None:
    """Labels of a Dataset of (image, label): its ``targets`` if it has them (as torchvision's
    ImageFolder does, sparing a decode of every image), else read item by item."""
    targets = getattr(dataset, "targets", None)
    if targets is not None and len(targets) == len(dataset):
        return np.asarray(targets)
    first = dataset[0]
    if not (isinstance(first, (tuple, list)) and len(first) >= 2):
        return None
    return np.array([np.asarray(dataset[i][1]).item() for i in range(len(dataset))])


def resize(images: torch.Tensor, size) -> torch.Tensor:
    """Resize a uint8 or float batch (n, C, H, W) to (size, size) (or (height, width)) with
    antialiasing; uint8 results are rounded, exactly as the exported graphs do
    (:mod:`easytl.export`)."""
    size = (size, size) if isinstance(size, int) else tuple(size)
    if tuple(images.shape[-2:]) == size:
        return images
    is_uint8 = images.dtype == torch.uint8
    if is_uint8:
        # A decoded file is a channels-last view; torch's float path is ~10× slower on that
        # layout than on a contiguous copy (same values, bit for bit).
        images = images.contiguous()
    out = F.interpolate(images.float(), size=size, mode="bilinear", antialias=True,
                        align_corners=False)
    return out.round().clamp(0, 255).to(torch.uint8) if is_uint8 else out


# Operating-system metadata that lives in image folders and is never meant as data.
_IGNORED_FILES = frozenset({"thumbs.db", "desktop.ini", "ehthumbs.db"})


def _visible_files(folder: Path) -> list[Path]:
    """Files under ``folder`` (recursive, sorted), without hidden files and OS metadata."""
    return sorted(p for p in folder.rglob("*")
                  if p.is_file() and p.name.lower() not in _IGNORED_FILES
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def list_image_files(folder, notice: bool = True) -> list[Path]:
    """The image files under ``folder`` (by extension, any case; recursive, sorted).

    Other files (a stray ``notes.txt``, a ``labels.csv``) are left out with a
    one-line warning naming them; image files that fail to decode are not
    filtered here: ``fit`` reports them.
    """
    files = _visible_files(Path(folder))
    images = [p for p in files if p.suffix.lower() in IMAGE_EXTENSIONS]
    if notice:
        _notice_left_out([p for p in files if p.suffix.lower() not in IMAGE_EXTENSIONS], Path(folder),
                         "in")
    return images


def _notice_left_out(others: list[Path], folder: Path, where: str) -> None:
    """One warning line naming (the first few of) the files a folder listing left out; ``where``
    says where those below its top are ("in the class sub-folders of"), those at its top are "in"."""
    if not others:
        return
    top = [p for p in others if p.parent == folder and where != "in"]
    loose = [p for p in top if p.suffix.lower() in IMAGE_EXTENSIONS]  # images with no class
    below = [p for p in others if p not in top]
    groups = (("non-images in", [p for p in top if p not in loose]),
              ("images outside the class sub-folders (no class) of", loose), (f"non-images {where}", below))
    parts = [f"{place} {folder}: {_first_few(files, folder)}" for place, files in groups if files]
    warnings.warn(f"left out {len(others)} file{'s' * (len(others) > 1)}: " + "; ".join(parts),
                  stacklevel=3)


def _first_few(files: list[Path], folder: Path) -> str:
    shown = ", ".join(str(p.relative_to(folder)) for p in files[:3])
    return shown + (f" and {len(files) - 3} more" if len(files) > 3 else "")


def _no_images(where: str) -> str:
    return f"no image files {where} (looked for {', '.join(sorted(IMAGE_EXTENSIONS))})"


def read_class_folders(folder) -> tuple[list[Path], np.ndarray | None]:
    """A folder with one sub-folder per class → (paths, labels); a flat folder → (paths, None).

    Every image below a class sub-folder, however deeply nested, takes that
    sub-folder's name as its label.
    """
    folder = Path(folder)
    if not folder.exists():
        raise FileNotFoundError(f"{folder} does not exist")
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder} is not a directory")
    class_dirs = sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not class_dirs:
        paths = list_image_files(folder)
        if not paths:
            raise ValueError(_no_images(f"in {folder}"))
        return paths, None
    paths, labels, others = [], [], []
    for class_dir in class_dirs:
        files = _visible_files(class_dir)
        images = [p for p in files if p.suffix.lower() in IMAGE_EXTENSIONS]
        others += [p for p in files if p.suffix.lower() not in IMAGE_EXTENSIONS]
        paths += images
        labels += [class_dir.name] * len(images)
    others += [p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
               and p.name.lower() not in _IGNORED_FILES]
    _notice_left_out(others, folder, "in the class sub-folders of")
    if not paths:
        raise ValueError(_no_images(f"in the class sub-folders of {folder}"))
    return paths, np.array(labels)


def as_image_source(X, y=None, size: int = 224, name: str = "X"):
    """Turn any supported ``X`` into an :class:`ImageSource` and its labels (or None).

    Accepted: ndarray or tensor (N,H,W), (N,H,W,C), (N,C,H,W) as uint8 or float
    in [0, 1], and one image (H,W,C) with C in 1, 3, 4; a list of PIL images,
    arrays or file paths; a directory with one sub-folder per class (labels from
    the folder names); a torch ``Dataset`` yielding ``(image, label)``; a table
    (``y`` is then its label column's name, or one label per row); a Hugging Face
    ``datasets.Dataset`` with an image column (labels from ``y``, the name of its
    label column, or the column :mod:`easytl.data.hf` finds).
    """
    labels = None
    from .hf import is_hf_dataset, read_hf
    from .tables import is_table, read_table
    if is_table(X):  # a CSV or DataFrame of image paths (labels too, when it has them)
        # y names the label column, or is one label per row (checked and used there)
        paths, labels, _ = read_table(X, y)
        X, y = [str(p) for p in paths], None
    if isinstance(X, ImageSource):  # read already (the CLI decodes a folder once for every use)
        source = X.at_size(size)
    elif is_hf_dataset(X):
        X, labels = read_hf(X, y, name=name)
        if y is None or isinstance(y, str):  # else y holds the labels themselves
            y = None
        if len(X) == 0:
            raise ValueError(f"{name} is an empty dataset: at least one image is needed.")
        source = ListImages(X, size, read_image_file)
    elif isinstance(X, (str, os.PathLike)):
        path = Path(X)
        if path.is_dir():
            paths, labels = read_class_folders(path)
            source = ListImages(paths, size, read_image_file)
        elif path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS:
            source = ListImages([path], size, read_image_file)  # one image file
        elif path.is_file():
            raise ValueError(f"{name} is a file but not an image ({path}): pass an image file, a "
                             "folder with one sub-folder per class, or a list of image paths.")
        else:
            raise FileNotFoundError(f"{name} does not exist: {path}")
    elif isinstance(X, (np.ndarray, torch.Tensor)):
        array = X.detach().cpu().numpy() if isinstance(X, torch.Tensor) else X
        if array.ndim == 3 and array.shape[-1] in (1, 3, 4):
            # (H, W, 1|3|4) is one image (what np.asarray(Image.open(f)) gives), not a batch
            # of gray images 1, 3 or 4 pixels wide.
            array = array[None]
        elif array.ndim == 2:
            # One gray image, or a batch of flattened images / feature rows: refuse rather
            # than guess, since either guess answers silently with the wrong number of rows.
            raise ValueError(f"{name} has shape {array.shape}: expected images, and a 2-D array "
                             "is ambiguous (one gray image, or rows of flattened images?). Pass "
                             "one gray image as x[None] (1, H, W) or x[..., None] (H, W, 1), and "
                             "a batch of gray images as (N, H, W).")
        if len(array) == 0:
            raise ValueError(f"{name} is empty: at least one image is needed.")
        source = ArrayImages(_array_to_uint8_nchw(array, where=name))
    elif isinstance(X, Dataset):
        if len(X) == 0:
            raise ValueError(f"{name} is an empty Dataset.")
        source = ListImages(X, size, _dataset_image)
        if y is None:
            labels = _dataset_labels(X)
    elif isinstance(X, (list, tuple)):
        if len(X) == 0:
            raise ValueError(f"{name} is empty: at least one image is needed.")
        if all(isinstance(item, (str, os.PathLike, EncodedImage)) for item in X):
            source = ListImages([p if isinstance(p, EncodedImage) else Path(p) for p in X], size,
                                read_image_file)
        else:
            # In memory already: convert (and so check) every image once, up front.
            items = [to_uint8_chw(item, where=f"{name}[{i}]") for i, item in enumerate(X)]
            source = ListImages(items, size, _as_is)
    else:
        raise TypeError(
            f"{name} of type {type(X).__name__} is not supported: pass an array (N,H,W,3), a list "
            "of PIL images or file paths, a directory of class sub-folders, or a torch Dataset.")
    if y is not None:
        from .labels import as_label_array
        labels = as_label_array(y)
        if labels.ndim not in (1, 2) or (labels.ndim == 2 and labels.shape[1] < 2):
            # a single column is a column vector of labels, not a one-class multi-label problem
            raise ValueError(f"y has shape {labels.shape}: expected one label per image (1-D, "
                             "e.g. y.ravel()), or a 0/1 indicator matrix (images, classes) with at "
                             "least two columns for multi-label.")
        if len(labels) != len(source):
            raise ValueError(f"{name} has {len(source)} images but y has {len(labels)} labels; "
                             "pass one label per image.")
    return source, labels


# --------------------------------------------------------------------------- batches

def as_targets(targets) -> torch.Tensor:
    """Class indices (n,) as int64; multi-label indicator rows (n, k) as float32."""
    array = np.asarray(targets)
    return torch.as_tensor(array, dtype=torch.float32 if array.ndim == 2 else torch.long)


class _Labelled(Dataset):
    """Pairs a source with integer targets so one batched fetch returns (images, targets)."""

    def __init__(self, source: ImageSource, targets: np.ndarray | None):
        self.source = source
        self.targets = None if targets is None else as_targets(targets)

    def __len__(self) -> int:
        return len(self.source)

    def __getitems__(self, indices):
        images = self.source.__getitems__(indices)
        if self.targets is None:
            return images, None
        return images, self.targets[torch.as_tensor(indices, dtype=torch.long)]


def _unwrap(batch):
    return batch


def decoding_threads(source: ImageSource, num_workers) -> int:
    """Threads that decode a batch's files at once: with ``num_workers="auto"`` and a source of
    image files, :func:`~easytl.data.images.decode_threads`; else 0 (arrays need no decoding,
    and an int asks for DataLoader worker processes, 0 for none)."""
    if num_workers != "auto" or not getattr(source, "decodes_files", False):
        return 0
    return decode_threads()


def batches(source: ImageSource, targets=None, batch_size: int = 32, shuffle: bool = False,
            generator: torch.Generator | None = None, num_workers=0,
            pin_memory: bool = False):
    """An iterable of ``(uint8 images (n,3,H,W), int64 targets or None)`` per batch.

    ``num_workers``: "auto" decodes image files in threads
    (:class:`ThreadedBatches`), anything else in the main process; an int > 0
    uses that many DataLoader worker processes.
    """
    dataset = _Labelled(source, targets)
    batch_size = int(batch_size)  # a numpy integer is a valid size; the sampler takes ints only
    order = RandomSampler(dataset, generator=generator) if shuffle else SequentialSampler(dataset)
    sampler = BatchSampler(order, batch_size, drop_last=False)
    threads = decoding_threads(source, num_workers)
    if threads > 1:
        return ThreadedBatches(dataset, sampler, threads, pin_memory)
    # The loader's own generator only seeds workers; a private one keeps iterating a loader
    # from consuming the global RNG (which the head's dropout draws from).
    return DataLoader(dataset, batch_sampler=sampler, collate_fn=_unwrap,
                      num_workers=0 if num_workers == "auto" else num_workers, pin_memory=pin_memory,
                      persistent_workers=False, generator=torch.Generator().manual_seed(0))


class ThreadedBatches:
    """Batches whose images are loaded by a pool of threads, the next batch while this one is used.

    The batch order comes from the same sampler a DataLoader would use, pulled
    from it at the same moments (the first batch on the first request, the last
    one and the sampler's end only when asked for), so a shuffled, seeded run
    draws its random numbers in the same order as with ``num_workers=0``.
    """

    def __init__(self, dataset: _Labelled, sampler: BatchSampler, threads: int,
                 pin_memory: bool = False):
        self.dataset, self.sampler, self.threads, self.pin_memory = dataset, sampler, threads, pin_memory

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self):
        from concurrent.futures import ThreadPoolExecutor
        source, targets = self.dataset.source, self.dataset.targets
        n_batches, order = len(self.sampler), iter(self.sampler)
        pool = ThreadPoolExecutor(max_workers=self.threads)
        try:
            ahead = []  # (indices, futures) of batches already being loaded
            for number in range(n_batches):
                if not ahead:
                    ahead.append(self._submit(pool, source, next(order)))
                if number + 1 < n_batches - 1:  # never the last batch: pulling it may draw
                    ahead.append(self._submit(pool, source, next(order)))
                indices, futures = ahead.pop(0)
                images = torch.stack([f.result() for f in futures])
                if self.pin_memory:
                    images = images.pin_memory()
                yield images, (None if targets is None
                               else targets[torch.as_tensor(indices, dtype=torch.long)])
            next(order, None)  # run the sampler to its end, as a DataLoader does
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    @staticmethod
    def _submit(pool, source: ImageSource, indices):
        return indices, [pool.submit(source.load, int(i)) for i in indices]
