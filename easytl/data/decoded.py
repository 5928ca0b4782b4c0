"""Image files decoded once per fit and kept at the size the model needs.

A fit passes over its images several times: the readability check, each
cached augmented view, every epoch that trains through the backbone,
validation, the statistics after training. Decoding a 12-megapixel JPEG each
time costs more than the model does, so the check decodes every file once (at
reduced DCT scale, :func:`~easytl.data.images.decode_image`), shrinks it to at
most ``side`` px a side and keeps it, in RAM up to a byte budget and beyond it
in a temporary file; the later passes read it from there.
"""

from __future__ import annotations

import os
import tempfile
import threading
import warnings
import weakref
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import torch

from .images import DECODE_ERRORS, decode_image, decode_threads, reason_for


class DecodedImages:
    """uint8 (3, h, w) images by key, with h, w <= ``side``: in RAM up to ``budget`` bytes,
    the rest in a temporary file in ``directory`` (deleted when this object goes away).

    Thread-safe; picklable for DataLoader worker processes (they read the file by its name).
    """

    def __init__(self, side: int, budget: int, directory=None, spill: bool = True):
        self.side, self.budget, self.directory, self.spill = int(side), int(budget), directory, spill
        self.ram: dict = {}
        self.disk: dict = {}  # key -> (offset, shape)
        self.ram_bytes = self.disk_bytes = 0
        self.path = self.file = None
        self.lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.ram) + len(self.disk)

    @property
    def storage(self) -> str:
        """Where the images are: "ram", "disk" or "ram+disk"."""
        return "+".join(where for where, part in (("ram", self.ram), ("disk", self.disk)) if part) \
            or "ram"

    def put(self, key, image: torch.Tensor) -> None:
        image = image.contiguous()
        nbytes = image.numel()
        with self.lock:
            if self.ram_bytes + nbytes <= self.budget:
                self.ram[key] = image
                self.ram_bytes += nbytes
                return
            if not self.spill:  # beyond the budget this image is decoded again when needed
                return
            try:
                if self.file is None:
                    self._open_file()
                offset = self.disk_bytes
                self.file.seek(offset)
                self.file.write(image.numpy().tobytes())
                self.file.flush()  # reads are positional, past Python's buffer
            except OSError as exc:  # e.g. no space left: this image is decoded again when needed
                if not getattr(self, "warned", False):
                    warnings.warn(f"decoded images not written to disk ({exc}); the rest are "
                                  "decoded from their files on every pass", stacklevel=2)
                    self.warned = True
                return
            self.disk[key] = (offset, tuple(image.shape))
            self.disk_bytes += nbytes

    def settle(self, size: int) -> None:
        """Once the input size is known: resize every image kept in RAM to exactly ``size`` ×
        ``size`` (what loading it at that size would compute, bit for bit), so that the many
        later passes of a fit load it without resizing it each time; ``side`` becomes
        ``size`` (loading at a larger size decodes the file again)."""
        from .sources import resize
        size = int(size)
        if size > self.side:
            return
        with self.lock:
            for key, image in self.ram.items():
                if tuple(image.shape[-2:]) != (size, size):
                    self.ram[key] = resize(image[None], size)[0].contiguous()
            self.ram_bytes = sum(image.numel() for image in self.ram.values())
            self.side = size

    def get(self, key) -> torch.Tensor | None:
        """The kept image, or None if ``key`` was not kept."""
        image = self.ram.get(key)
        if image is not None:
            return image
        entry = self.disk.get(key)
        if entry is None:
            return None
        offset, shape = entry
        out = torch.empty(shape, dtype=torch.uint8)
        if hasattr(os, "pread"):
            # Positional: forked DataLoader workers share the file's offset with this process,
            # so a seek here and a read there would read another image's bytes.
            data = os.pread(self.file.fileno(), out.numel(), offset)
            out.view(-1).copy_(torch.frombuffer(bytearray(data), dtype=torch.uint8))
        else:  # Windows: workers are spawned and open the file afresh (__setstate__)
            with self.lock:
                self.file.seek(offset)
                self.file.readinto(out.numpy().reshape(-1))
        return out

    def _open_file(self) -> None:
        fd, self.path = tempfile.mkstemp(prefix="easytl-images-", dir=self.directory)
        self.file = os.fdopen(fd, "w+b")
        weakref.finalize(self, _remove, self.file, self.path, os.getpid())

    def __getstate__(self) -> dict:
        state = {k: v for k, v in self.__dict__.items() if k not in ("lock", "file")}
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.lock = threading.Lock()
        self.file = None if self.path is None else open(self.path, "rb")  # a worker only reads


def _remove(file, path: str, owner: int) -> None:
    file.close()
    if os.getpid() == owner:  # not from a forked worker that inherited this object
        try:
            os.remove(path)
        except OSError:
            pass


def shrink(image: torch.Tensor, side: int) -> torch.Tensor:
    """``image`` (3, H, W) with each side cut to at most ``side`` px (antialiased); smaller
    sides stay as they are, so a small image is kept exactly."""
    from .sources import resize
    height, width = image.shape[-2:]
    target = (min(height, side), min(width, side))
    return image if target == (height, width) else resize(image[None], target)[0]


def decode_once(items: Sequence, side: int, budget: int, directory=None, verbose: int = 0,
                positions: Sequence[int] | None = None, workers: int | None = None,
                draft_side: int | None = None, square: bool = False, spill: bool = True):
    """Decode ``items[p]`` (paths or encoded images) for each p in ``positions`` (default: all)
    once, in threads, into a :class:`DecodedImages` keyed by p.

    JPEGs decode at the smallest DCT scale that keeps ``draft_side`` (default
    ``side``) px a side; each image is then shrunk to at most ``side`` a side,
    or with ``square`` resized to exactly ``side`` × ``side``: what a model of
    that input size sees, so reading it back equals decoding the file afresh.
    ``spill=False`` keeps what fits in ``budget`` and no more (no temporary file).
    Returns the store and ``(index, item, reason)`` for each item that cannot be
    decoded, ``index`` counting in ``positions``, in order.
    """
    from ..progress import progress
    from .sources import resize
    store = DecodedImages(side, budget, directory, spill)

    def work(position: int) -> str | None:
        item = items[position]
        try:
            image = decode_image(item, min_side=draft_side or side)
        except DECODE_ERRORS as exc:
            return reason_for(exc, item)
        store.put(position, resize(image[None], side)[0] if square else shrink(image, side))
        return None

    positions = list(range(len(items))) if positions is None else list(positions)
    n = len(positions)
    with ThreadPoolExecutor(max_workers=workers or decode_threads()) as pool:
        reasons = list(progress(pool.map(work, positions, chunksize=4), total=n,
                                desc=f"checking {n:,} images", verbose=verbose))
    bad = [(i, items[p], reason) for i, (p, reason) in enumerate(zip(positions, reasons))
           if reason is not None]
    return store, bad


def read_files_once(paths: Sequence, size: int, budget: int, directory=None, verbose: int = 0):
    """Image files decoded once, at what a model of input ``size`` sees, for several uses.

    Returns a source of the readable files (loading one reads the kept image:
    the same pixels as decoding the file afresh at ``size``) and ``(path,
    reason)`` for each file that cannot be read. The command line uses it so
    that a folder is decoded once for the readability check, the prediction and
    the novelty score together.
    """
    from .images import DRAFT_MARGIN, read_image_file
    from .sources import ListImages
    # Within ``budget`` only: a command streams a folder of any size, and must not write a
    # temporary file as large as it (the images beyond the budget are decoded twice).
    store, bad_items = decode_once(paths, size, budget, directory, verbose,
                                   draft_side=int(DRAFT_MARGIN * size), square=True, spill=False)
    broken = {index for index, _, _ in bad_items}
    kept = [i for i in range(len(paths)) if i not in broken]
    source = ListImages(list(paths), size, read_image_file, kept, store)
    return source, [(item, reason) for _, item, reason in bad_items]
