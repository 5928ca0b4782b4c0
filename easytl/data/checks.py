"""Checks for data mistakes that would otherwise train, or predict, without a word.

* Label names (:func:`label_findings`): a class of one or two images named
  like a frequent class (``cta`` or ``Cat`` beside 98 ``cat``) is most likely
  a typo, and following the split error's advice (``val_size=0``) would train
  it as a class of its own. Such classes are named in a warning before
  training, and first in the split error.
* Image sizes (:class:`ImageSides`): an image whose shorter side is under
  :data:`TINY_FRACTION` of the model's input size (a 1x1 thumbnail, a 16 px
  icon for a 224 px model) is upscaled from a few pixels and shows nothing to
  learn or to predict from. The sizes are read where they cost no decoding:
  the images fit decoded once already, an array's shape, a file's header.
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from .images import DECODE_ERRORS, EncodedImage, open_image
from .sources import ArrayImages, ImageSource, ListImages

# A class is rare with at most RARE_IMAGES images, or under RARE_FRACTION of the median class:
# a rare class named like a frequent one (one with FREQUENT_RATIO times its images, and not
# rare) is taken for a typo. Two frequent classes one edit apart ("cat", "car") are real.
RARE_IMAGES = 2
RARE_FRACTION = 0.05
FREQUENT_RATIO = 5
MIN_EDIT_LENGTH = 3      # shorter names (codes like "a", "b") are not compared by their edits
SINGLE_MEDIAN = 3        # a class of one image is named where the median class has this many
TINY_FRACTION = 1 / 8    # an image whose shorter side is under this fraction of the input size
SHOWN = 5                # images (and classes in an error) a message names; the rest are counted
MAX_LISTED = 20          # classes the label warning names, one a line


# ------------------------------------------------------------------------ label names
def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


def _images(n: int) -> str:
    return f"{n} image{'s' * (n != 1)}"


def _key(name: str) -> str:
    """A name without case and spacing: "Ice cream ", "ice_cream" and "icecream" are one key."""
    return re.sub(r"[\s_\-]+", "", name).casefold()


def _numeric(name: str) -> bool:
    try:
        float(name)
    except ValueError:
        return False
    return True


def one_edit_apart(a: str, b: str) -> bool:
    """Whether ``b`` is ``a`` with one character inserted, deleted, replaced, or two neighbours
    swapped ("cta" for "cat": two replacements to Levenshtein, one slip of the fingers)."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        return len(diff) == 1 or (len(diff) == 2 and diff[1] == diff[0] + 1
                                  and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]])
    short, long = (a, b) if len(a) < len(b) else (b, a)
    i = next((k for k in range(len(short)) if short[k] != long[k]), len(short))
    return short[i:] == long[i + 1:]


@dataclass(frozen=True)
class LabelFinding:
    """A class that looks like a mistake: ``like`` is the class it resembles (None: alone)."""

    name: object
    count: int
    like: object = None
    like_count: int = 0
    typo: bool = True       # False: two classes that differ only by case or spacing, both common
    median: float = 0.0

    def __str__(self) -> str:
        if self.like is None:
            return f"class {self.name!r} has 1 image (the median class has {self.median:g} images)"
        if self.typo:
            return (f"class {self.name!r} ({_images(self.count)}) looks like a typo of "
                    f"{self.like!r} ({_images(self.like_count)})")
        return (f"classes {self.name!r} ({_images(self.count)}) and {self.like!r} "
                f"({_images(self.like_count)}) differ only by case or spacing")


def label_findings(classes, counts) -> list[LabelFinding]:
    """The classes that look like label mistakes, in class order (see the module docstring)."""
    names = [_plain(c) for c in np.asarray(classes).tolist()]
    counts = [int(n) for n in counts]
    if len(names) < 2:
        return []
    median = float(np.median(counts))
    rare = [n <= RARE_IMAGES or n < RARE_FRACTION * median for n in counts]
    texts = [i for i, name in enumerate(names) if isinstance(name, str)]
    keys = {i: _key(names[i]) for i in texts}
    same = {}  # key -> the classes of that key
    for i in texts:
        same.setdefault(keys[i], []).append(i)
    near = _one_edit_index([j for j in texts if not rare[j]], keys, names)
    findings, named = [], set()
    for i in texts:
        alike = [j for j in same[keys[i]] if j != i]
        likes = [j for j in alike + near(i) if not rare[j] and counts[j] >= FREQUENT_RATIO * counts[i]]
        if rare[i] and likes:
            j = max(likes, key=lambda k: counts[k])
            findings.append(LabelFinding(names[i], counts[i], names[j], counts[j], median=median))
            named.add(i)
        elif alike and not named.intersection(alike):  # both common (or both rare): said once
            j = alike[0]
            findings.append(LabelFinding(names[i], counts[i], names[j], counts[j], typo=False))
            named.update((i, j))
    for i, name in enumerate(names):
        if counts[i] == 1 and i not in named and median >= SINGLE_MEDIAN:
            findings.append(LabelFinding(name, 1, median=median))
    return findings


def _one_edit_index(frequent: list, keys: dict, names: list):
    """``near(i)``: the classes of ``frequent`` whose key is one edit from class i's, found
    through the keys less one character (every one-edit pair shares one), so that thousands
    of classes cost no pairwise comparison."""
    def comparable(i):
        return len(keys[i]) >= MIN_EDIT_LENGTH and not _numeric(names[i])

    def less_one(key):
        return {key} | {key[:k] + key[k + 1:] for k in range(len(key))}
    index = {}
    for j in frequent:
        if comparable(j):
            for variant in less_one(keys[j]):
                index.setdefault(variant, set()).add(j)

    def near(i):
        if not comparable(i):
            return []
        found = set().union(*(index.get(v, ()) for v in less_one(keys[i])))
        return sorted(j for j in found if j != i and one_edit_apart(keys[i], keys[j]))
    return near


def warn_labels(findings: list[LabelFinding], where: str = "y") -> None:
    """One warning naming every suspicious class, before any training time is spent."""
    if findings:
        lines = "\n".join(f"  {finding}" for finding in findings[:MAX_LISTED])
        if len(findings) > MAX_LISTED:
            lines += f"\n  and {len(findings) - MAX_LISTED} more"
        warnings.warn(f"{where}: some classes may be label mistakes (each is trained as a class "
                      f"of its own):\n{lines}\nFix or merge the labels that are mistakes.",
                      stacklevel=4)


def split_advice(findings: list[LabelFinding], error: Exception) -> str:
    """The split error with the classes of a single image (and what they resemble) named first."""
    single = [str(f) for f in findings if f.count < 2]
    if not single:
        return str(error)
    if len(single) > SHOWN:
        single = single[:SHOWN] + [f"{len(single) - SHOWN} more classes of 1 image"]
    return (f"{'; '.join(single)}. Fix these labels if they are mistakes; if the classes are "
            f"real: {error}")


# ------------------------------------------------------------------------ image sizes
def image_shapes(source: ImageSource, use_store: bool = False) -> np.ndarray | None:
    """(height, width) of each image of ``source`` as given, -1 where it would cost a decode
    (a torch Dataset's items); one row for an array (its images share one shape).

    ``use_store``: the images fit decoded once (:mod:`easytl.data.decoded`) keep their own
    size below the decoding side, so their shapes answer without reading a file again.
    """
    if isinstance(source, ArrayImages):
        return np.array([source.images.shape[-2:]], dtype=np.int64)
    if not isinstance(source, ListImages):
        return None
    if isinstance(source.items, Dataset):
        return None  # a Dataset's item is decoded to be looked at: not twice
    store = source.store if use_store else None
    shapes = np.full((len(source), 2), -1, dtype=np.int64)
    for i, position in enumerate(source.positions):
        stored = None if store is None else _stored_shape(store, position)
        if stored is not None:
            shapes[i] = stored
            continue
        item = source.items[position]
        if isinstance(item, torch.Tensor):
            shapes[i] = item.shape[-2:]
        elif isinstance(item, (str, os.PathLike, EncodedImage)):
            try:
                with open_image(item) as image:  # the header only
                    shapes[i] = image.size[::-1]
            except DECODE_ERRORS:
                pass  # unreadable: said where it is decoded
    return shapes


def _stored_shape(store, key):
    image = store.ram.get(key)
    if image is not None:
        return tuple(image.shape[-2:])
    entry = store.disk.get(key)
    return None if entry is None else tuple(entry[1][-2:])


@dataclass
class ImageSides:
    """The image shapes of one input (X, X_val, X_unlabeled), to check against an input size.

    ``checked`` is the largest input size checked so far: each image is named once, at the
    first size it is far below (fit checks before the plan, then at the chosen size).
    """

    name: str
    shapes: np.ndarray       # (n, 2), or (1, 2) for n images of one shape
    n: int
    source: ImageSource
    where: np.ndarray        # each image's position in the input as given
    checked: int = 0

    @classmethod
    def of(cls, source: ImageSource, name: str, where=None, use_store: bool = False):
        """``source``'s shapes (None where none can be read cheaply); ``where``: each image's
        position in the input as given (default: its position in ``source``)."""
        shapes = image_shapes(source, use_store)
        if shapes is None:
            return None
        where = np.arange(len(source)) if where is None else np.asarray(where)
        return cls(name, shapes, len(source), source, where)

    def _describe(self, i: int) -> str:
        """A path where the image is a file, else its position: ``X[3]``."""
        item = self.source.items[self.source.positions[i]]
        if isinstance(item, (str, os.PathLike, EncodedImage)):
            return str(item)
        return f"{self.name}[{self.where[i]}]"

    def warn(self, size: int, predicting: bool = False, at_least: bool = False) -> None:
        """Warn of the images far below ``size`` that no smaller size checked already named;
        ``at_least``: ``size`` is the smallest input size the fit may choose, not the chosen one."""
        size = int(size)
        if size <= self.checked:
            return
        short = np.where((self.shapes < 0).any(1), -1, self.shapes.min(1))
        tiny = np.flatnonzero((short >= 0) & (short < TINY_FRACTION * size)
                              & (short >= TINY_FRACTION * self.checked))
        self.checked = size
        if len(tiny):
            warnings.warn(self._message(tiny, size, predicting, at_least), stacklevel=4)

    def _message(self, tiny: np.ndarray, size: int, predicting: bool, at_least: bool) -> str:
        why = ("their predictions rest on a few pixels: check them" if predicting else
               "they give the model a few pixels to learn from: check or remove them (for images "
               "this small by design, pass a smaller image_size)")
        limit = f"shorter side under {TINY_FRACTION * size:g} px"
        model = ("the smallest input size this fit may choose" if at_least
                 else "the model's input size") + f" ({size} px; {limit})"
        height, width = self.shapes[0]
        if isinstance(self.source, ArrayImages):  # one shape: every image
            what = "the 1 image is" if self.n == 1 else f"all {self.n} images are"
            return (f"{self.name}: {what} {height}x{width}, far smaller than {model}: upscaled "
                    f"that far, {why}.")
        shown = ", ".join(f"{self._describe(i)} ({self.shapes[i][0]}x{self.shapes[i][1]})"
                          for i in tiny[:SHOWN])
        more = f" and {len(tiny) - SHOWN} more" if len(tiny) > SHOWN else ""
        verb = "is" if len(tiny) == 1 else "are"
        return (f"{self.name}: {len(tiny)} of {_images(self.n)} {verb} far smaller than "
                f"{model}: {shown}{more}. Upscaled that far, {why}.")


def warn_small_inputs(source: ImageSource, size: int, name: str = "X") -> None:
    """At prediction: warn of the images of ``source`` far below the model's input ``size``."""
    sides = ImageSides.of(source, name)
    if sides is not None:
        sides.warn(size, predicting=True)
