"""Turn any supported ``X`` into batches of uint8 images, and batches into model input.

Images stay uint8 (the smallest exact form) until a batch reaches the
training device; there it is resized, augmented and normalised as one tensor.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler
from torchvision.ops import roi_align

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".jfif", ".bmp", ".webp", ".gif", ".tif",
                              ".tiff", ".ppm", ".pgm", ".pbm", ".pnm"})
_CHANNELS = (1, 3, 4)


# --------------------------------------------------------------------------- single images

def to_uint8_chw(image, where: str = "image") -> torch.Tensor:
    """Convert one image (PIL, ndarray or tensor; HW, HWC or CHW) to a uint8 (3, H, W) tensor."""
    if isinstance(image, Image.Image):
        return torch.from_numpy(pil_to_rgb(image, where)).permute(2, 0, 1)
    if isinstance(image, (str, os.PathLike)):
        return read_image_file(image)
    array = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    return _array_to_uint8_nchw(array[None], where=where)[0]


# Single-channel modes that hold more than 8 bits: 16-bit PNG/TIFF, 32-bit integer TIFF.
_WIDE_INTEGER_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})


def pil_to_rgb(image: Image.Image, where: str = "image") -> np.ndarray:
    """A PIL image as a writable uint8 (H, W, 3) array, the way a photo viewer shows it.

    The EXIF orientation is applied (phone photos are stored sideways with a tag
    saying so); 16-bit gray images are scaled to 8 bits (``convert("RGB")``
    would clip them to white); float images must lie in [0, 1]; palette images
    with transparency and other alpha images lose their alpha, as arrays do.
    """
    if 0 in image.size:
        raise ValueError(f"{where} is {image.size[0]}x{image.size[1]} pixels: an image cannot be "
                         "0 pixels wide or high.")
    image = ImageOps.exif_transpose(image)
    if image.mode in _WIDE_INTEGER_MODES:
        values = np.asarray(image).astype(np.int64)
        low, high = int(values.min()), int(values.max())
        if low < 0 or high > 65535:
            raise ValueError(f"{where} is a {image.mode} integer image with values in [{low}, {high}]; "
                             "easytl reads 16-bit images (0-65535). Re-save it as 8 or 16 bits.")
        gray = np.rint(values / 257.0).astype(np.uint8)  # 65535 -> 255, exact for 8-bit data * 257
        return np.repeat(gray[..., None], 3, axis=2)
    if image.mode == "F":
        values = np.asarray(image, dtype=np.float32)
        if not np.isfinite(values).all():
            raise ValueError(f"{where} is a float image with NaN or infinite values.")
        low, high = float(values.min()), float(values.max())
        if low < 0.0 or high > 1.0:
            raise ValueError(f"{where} is a float image with values in [{low:.3g}, {high:.3g}]; "
                             "easytl reads float images in [0, 1]. Rescale it, or re-save it as "
                             "an 8- or 16-bit image.")
        gray = np.rint(values * 255.0).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")  # the documented route; converting straight to RGB warns
    return np.array(image.convert("RGB"), copy=True)


def read_image_file(path) -> torch.Tensor:
    """Decode an image file to a uint8 (3, H, W) tensor, with a clear error if it cannot be read."""
    try:
        with Image.open(path) as image:
            return to_uint8_chw(image, where=str(path))
    except FileNotFoundError:
        raise FileNotFoundError(f"image file not found: {path}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ValueError(f"cannot read image file {path}: {exc}. Remove or re-save it.") from None


class UnreadableImagesError(ValueError):
    """Image files that cannot be decoded; ``bad`` lists (path, reason)."""

    def __init__(self, message: str, bad: list):
        super().__init__(message)
        self.bad = bad


def unreadable_reason(path) -> str | None:
    """Why an image file cannot be used (missing, not an image, truncated, empty), or None."""
    try:
        with Image.open(path) as image:
            image.draft("RGB", (64, 64))  # JPEG decodes at reduced scale but still reads it all
            image.load()
            if image.width == 0 or image.height == 0:
                return "the image has zero size"
            pil_to_rgb(image)  # the conversion training will do (16-bit, float range, EXIF)
    except FileNotFoundError:
        return "file not found"
    except IsADirectoryError:
        return "is a directory"
    except UnidentifiedImageError:
        return ("not an image file" if Path(path).suffix.lower() not in IMAGE_EXTENSIONS
                else "not a readable image (corrupted, or a format Pillow cannot decode)")
    except (OSError, SyntaxError, ValueError) as exc:
        return str(exc) or type(exc).__name__
    return None


def find_unreadable(paths: Sequence, workers: int | None = None,
                    verbose: int = 0) -> list[tuple[Path, str]]:
    """Decode every file once (in threads: PIL releases the GIL) and return (path, reason)
    for each one that cannot be used, in the order given."""
    from concurrent.futures import ThreadPoolExecutor

    from .progress import progress
    paths = [Path(p) for p in paths]
    with ThreadPoolExecutor(max_workers=workers or min(8, os.cpu_count() or 1)) as pool:
        reasons = list(progress(pool.map(unreadable_reason, paths, chunksize=16), total=len(paths),
                                desc=f"checking {len(paths):,} images", verbose=verbose))
    return [(path, reason) for path, reason in zip(paths, reasons) if reason is not None]


def describe_unreadable(bad: list[tuple[Path, str]], limit: int = 10) -> str:
    """One line per bad file (at most ``limit``), then how many more."""
    lines = [f"  {path}: {reason}" for path, reason in bad[:limit]]
    if len(bad) > limit:
        lines.append(f"  ... and {len(bad) - limit} more")
    return "\n".join(lines)


def _array_to_uint8_nchw(array: np.ndarray, where: str = "X") -> torch.Tensor:
    """Validate an (N,H,W), (N,H,W,C) or (N,C,H,W) array and return uint8 (N,3,H,W)."""
    if array.dtype == object:
        raise TypeError(f"{where} has dtype object (often images of different sizes, which cannot "
                        "form one array): pass a list of images instead (each is resized), or a "
                        "numeric array of equal-sized images.")
    if array.ndim == 3:
        array = array[..., None]
    if array.ndim != 4:
        raise ValueError(
            f"{where} has shape {array.shape}: expected (N, H, W), (N, H, W, C) or (N, C, H, W) "
            f"with C in {_CHANNELS}.")
    if array.shape[-1] in _CHANNELS:
        array = np.moveaxis(array, -1, 1)
    elif array.shape[1] not in _CHANNELS:
        raise ValueError(
            f"{where} has shape {array.shape}: no axis of size 1, 3 or 4 for the colour channels. "
            "Pass (N, H, W, 3), (N, 3, H, W) or gray (N, H, W).")
    if min(array.shape[2:]) == 0:
        raise ValueError(f"{where} has shape {array.shape}: an image cannot be 0 pixels wide or high.")
    array = np.ascontiguousarray(_to_uint8(array, where))
    if not array.flags.writeable:  # e.g. np.asarray(PIL image); torch warns on read-only memory
        array = array.copy()
    tensor = torch.from_numpy(array)
    channels = tensor.shape[1]
    if channels == 1:
        tensor = tensor.expand(-1, 3, -1, -1)
    elif channels == 4:  # RGBA: drop alpha, as PIL's convert("RGB") does
        tensor = tensor[:, :3]
    return tensor.contiguous()


def _to_uint8(array: np.ndarray, where: str) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise ValueError(f"{where} contains NaN or infinite pixel values; clean or drop those images.")
        low, high = float(array.min()), float(array.max())
        if low < 0.0 or high > 1.0:
            raise ValueError(
                f"{where} is float with values in [{low:.3g}, {high:.3g}]; float images must lie in "
                "[0, 1]. Divide by 255 (or by your data's maximum), or pass uint8.")
        return np.rint(array * 255.0).astype(np.uint8)
    if np.issubdtype(array.dtype, np.integer):
        low, high = int(array.min()), int(array.max())
        if low < 0 or high > 255:
            raise ValueError(
                f"{where} is integer with values in [{low}, {high}]; integer images must lie in "
                "[0, 255]. Rescale them, or pass floats in [0, 1].")
        return array.astype(np.uint8)
    raise TypeError(f"{where} has unsupported dtype {array.dtype}; use uint8 or float in [0, 1].")


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
    in memory; with ``num_workers > 0`` decoding happens in DataLoader workers.
    A subset keeps the same items and a list of positions, so it loads nothing either.
    """

    def __init__(self, items: Sequence, size: int, load_item: Callable = to_uint8_chw,
                 positions: Sequence[int] | None = None):
        self.items = items
        self.size = size
        self.load_item = load_item
        self.positions = list(range(len(items))) if positions is None else list(positions)

    def __len__(self) -> int:
        return len(self.positions)

    def load(self, index: int) -> torch.Tensor:
        image = self.load_item(self.items[self.positions[index]])
        if tuple(image.shape[-2:]) != (self.size, self.size):
            image = resize(image[None], self.size)[0]
        return image

    def subset(self, indices) -> "ListImages":
        return ListImages(self.items, self.size, self.load_item,
                          [self.positions[int(i)] for i in indices])

    def native_size(self, index: int) -> tuple[int, int]:
        item = self.items[self.positions[index]]
        if isinstance(item, (str, os.PathLike)):
            with Image.open(item) as image:  # reads the header only
                width, height = image.size
            return height, width
        if isinstance(item, torch.Tensor):  # converted on arrival: (3, H, W)
            return tuple(item.shape[-2:])
        return tuple(self.load_item(item).shape[-2:])  # a Dataset item: decoded


def _as_is(image: torch.Tensor) -> torch.Tensor:
    """The loader of images converted on arrival (a module-level function: workers pickle it)."""
    return image


def _dataset_image(item) -> torch.Tensor:
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


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resize a uint8 or float batch (n, C, H, W) to (size, size) with antialiasing."""
    if tuple(images.shape[-2:]) == (size, size):
        return images
    is_uint8 = images.dtype == torch.uint8
    out = F.interpolate(images.float(), size=(size, size), mode="bilinear", antialias=True,
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
    """One warning line naming (the first few of) the files a folder listing left out."""
    if not others:
        return
    shown = ", ".join(str(p.relative_to(folder)) for p in others[:3])
    if len(others) > 3:
        shown += f" and {len(others) - 3} more"
    plural = len(others) > 1
    warnings.warn(f"left out {len(others)} non-image file{'s' * plural} {where} {folder}: {shown}",
                  stacklevel=3)


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
    in [0, 1]; a list of PIL images, arrays or file paths; a directory with one
    sub-folder per class (labels from the folder names); a torch ``Dataset``
    yielding ``(image, label)``.
    """
    labels = None
    if isinstance(X, (str, os.PathLike)):
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
        if array.ndim == 3 and array.shape[-1] in (3, 4):
            # (H, W, 3|4) is one colour image (what np.asarray(Image.open(f)) gives), not a
            # batch of gray images 3 or 4 pixels wide.
            array = array[None]
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
        if all(isinstance(item, (str, os.PathLike)) for item in X):
            source = ListImages([Path(p) for p in X], size, read_image_file)
        else:
            # In memory already: convert (and so check) every image once, up front.
            items = [to_uint8_chw(item, where=f"{name}[{i}]") for i, item in enumerate(X)]
            source = ListImages(items, size, _as_is)
    else:
        raise TypeError(
            f"{name} of type {type(X).__name__} is not supported: pass an array (N,H,W,3), a list "
            "of PIL images or file paths, a directory of class sub-folders, or a torch Dataset.")
    if y is not None:
        labels = np.asarray(y)
        if labels.ndim != 1:
            raise ValueError(f"y has shape {labels.shape}: expected one label per image (1-D).")
        if len(labels) != len(source):
            raise ValueError(f"{name} has {len(source)} images but y has {len(labels)} labels; "
                             "pass one label per image.")
    return source, labels


# --------------------------------------------------------------------------- batches

class _Labelled(Dataset):
    """Pairs a source with integer targets so one batched fetch returns (images, targets)."""

    def __init__(self, source: ImageSource, targets: np.ndarray | None):
        self.source = source
        self.targets = None if targets is None else torch.as_tensor(targets, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.source)

    def __getitems__(self, indices):
        images = self.source.__getitems__(indices)
        if self.targets is None:
            return images, None
        return images, self.targets[torch.as_tensor(indices, dtype=torch.long)]


def _unwrap(batch):
    return batch


def batches(source: ImageSource, targets=None, batch_size: int = 32, shuffle: bool = False,
            generator: torch.Generator | None = None, num_workers: int = 0,
            pin_memory: bool = False) -> DataLoader:
    """A DataLoader yielding ``(uint8 images (n,3,H,W), int64 targets or None)`` per batch."""
    dataset = _Labelled(source, targets)
    order = RandomSampler(dataset, generator=generator) if shuffle else SequentialSampler(dataset)
    # The loader's own generator only seeds workers; a private one keeps iterating a loader
    # from consuming the global RNG (which the head's dropout draws from).
    return DataLoader(dataset, batch_sampler=BatchSampler(order, batch_size, drop_last=False),
                      collate_fn=_unwrap, num_workers=num_workers, pin_memory=pin_memory,
                      persistent_workers=False, generator=torch.Generator().manual_seed(0))


# --------------------------------------------------------------------------- on-device preprocessing

class Preprocessor:
    """uint8 batch → resized, (optionally) augmented, normalised float batch on the device.

    Parameters
    ----------
    size : int
        Square model input size.
    mean, std : sequence of 3 floats
        Normalisation of the backbone's pretrained weights.
    augment : "default", None or callable
        Training-time augmentation. A callable receives a float batch in [0, 1]
        of shape (n, 3, size, size) on the device and returns one like it.
    """

    def __init__(self, size: int, mean, std, augment="default"):
        self.size = int(size)
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        self.augment = augment

    def __call__(self, images: torch.Tensor, train: bool = False,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        x = images.float().div_(255.0)
        if train and self.augment == "default":
            x = default_augment(x, self.size, generator)
        else:
            x = resize(x, self.size)
            if train and callable(self.augment):
                x = self.augment(x)
        return self.normalise(x)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """Float batch in [0, 1] → the backbone's normalisation, channels-last."""
        mean, std = self.mean.to(x.device), self.std.to(x.device)
        return ((x - mean) / std).contiguous(memory_format=torch.channels_last)

    def test_time_views(self, images: torch.Tensor, n_views: int,
                        generator: torch.Generator | None = None) -> list[torch.Tensor]:
        """The plain view, its mirror image, then mildly augmented views (test-time augmentation).

        Views after the first two take a large random crop (85–100% of the
        area), a random flip and ±5% brightness/contrast: far milder than the
        training augmentation, so they stay close to the test distribution.
        """
        x = images.float().div_(255.0)
        plain = resize(x, self.size)
        views = [plain, plain.flip(-1)][:n_views]
        for _ in range(n_views - len(views)):
            views.append(default_augment(x, self.size, generator, scale=(0.85, 1.0),
                                         ratio=(0.9, 1.1), jitter=0.05))
        return [self.normalise(v) for v in views]


def _uniform(n: int, low: float, high: float, generator, device) -> torch.Tensor:
    return (torch.rand(n, generator=generator) * (high - low) + low).to(device)


def random_crop_boxes(n: int, height: int, width: int, scale=(0.7, 1.0), ratio=(3 / 4, 4 / 3),
                      generator=None) -> torch.Tensor:
    """Per-image random crop boxes (x1, y1, x2, y2), as in RandomResizedCrop's sampling."""
    area = height * width * (torch.rand(n, generator=generator) * (scale[1] - scale[0]) + scale[0])
    log_ratio = torch.rand(n, generator=generator) * (math.log(ratio[1]) - math.log(ratio[0])) \
        + math.log(ratio[0])
    aspect = torch.exp(log_ratio)
    crop_w = torch.sqrt(area * aspect).clamp(max=width)
    crop_h = torch.sqrt(area / aspect).clamp(max=height)
    x1 = torch.rand(n, generator=generator) * (width - crop_w)
    y1 = torch.rand(n, generator=generator) * (height - crop_h)
    return torch.stack([x1, y1, x1 + crop_w, y1 + crop_h], dim=1)


def default_augment(x: torch.Tensor, size: int, generator=None, scale=(0.7, 1.0),
                    ratio=(3 / 4, 4 / 3), jitter: float = 0.15) -> torch.Tensor:
    """Random resized crop (scale 0.7–1), horizontal flip and brightness/contrast jitter (±15%).

    Each image gets its own random parameters, yet the whole batch is processed
    in a few tensor ops: torchvision's v2 transforms draw one set of parameters
    per call, which would give every image of a batch the same crop.
    """
    n, _, height, width = x.shape
    boxes = random_crop_boxes(n, height, width, scale, ratio, generator).to(x.device)
    rois = torch.cat([torch.arange(n, device=x.device, dtype=x.dtype)[:, None], boxes.to(x.dtype)], 1)
    x = roi_align(x, rois, output_size=(size, size), spatial_scale=1.0, sampling_ratio=-1,
                  aligned=True)
    flip = (torch.rand(n, generator=generator) < 0.5).to(x.device)
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    contrast = _uniform(n, 1 - jitter, 1 + jitter, generator, x.device)[:, None, None, None]
    brightness = _uniform(n, 1 - jitter, 1 + jitter, generator, x.device)[:, None, None, None]
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return ((x - mean) * contrast + mean).mul(brightness).clamp_(0.0, 1.0)
