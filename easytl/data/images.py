"""One image, from whatever a user has (file, PIL image, array), to a uint8 (3, H, W) tensor.

Files are decoded the way a photo viewer shows them (EXIF orientation, 16-bit
and float images scaled properly), and every problem is reported in words
that name the file and the fix. A JPEG is decoded at the smallest scale that
still serves the model (libjpeg's DCT scaling: a 12-megapixel photo decodes at
1/4 of its size for a 224 px model, about 10× faster than in full).
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".jfif", ".bmp", ".webp", ".gif", ".tif",
                              ".tiff", ".ppm", ".pgm", ".pbm", ".pnm"})
_CHANNELS = (1, 3, 4)

# What decoding a bad file raises (Pillow: OSError for truncated data, SyntaxError for broken
# headers, ValueError from the checks in pil_to_rgb).
DECODE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError)


# A JPEG is decoded at reduced scale (1/2, 1/4 or 1/8, libjpeg's DCT scaling) only while both
# its sides stay at least DRAFT_MARGIN × the model's input side. DCT scaling is itself a proper
# downscale (each 8×8 block's mean at 1/8), so the margin only has to leave the antialiased
# resize that follows enough pixels: at 1.5× the features differ from a full decode's by less
# than the model notices (tests/data/test_photos.py pins it at 1/4 and 1/8 scale), and a
# 12-megapixel photo decodes at 1/8 for a 224 px model, where 2× would stop at 1/4 and leave
# a 4× larger image to resize.
DRAFT_MARGIN = 1.5


class EncodedImage:
    """An image file's bytes held in memory (a row of a Hugging Face dataset), decoded like a file.

    ``name`` stands for it in messages (the dataset's file name, or its row).
    """

    __slots__ = ("data", "name")

    def __init__(self, data: bytes, name: str):
        self.data, self.name = data, name

    def __str__(self) -> str:
        return self.name

    __repr__ = __str__


def open_image(item) -> Image.Image:
    """``Image.open`` of a path or an :class:`EncodedImage` (reads the header only); a TIFF that
    Pillow has no mode for (RGB float) is decoded by :func:`open_tiff` instead."""
    try:
        return Image.open(io.BytesIO(item.data) if isinstance(item, EncodedImage) else item)
    except UnidentifiedImageError:
        if not _is_tiff(item):
            raise
    return open_tiff(item)


# --------------------------------------------------------------------------- TIFFs Pillow cannot open

_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic and BigTIFF, both byte orders
# The TIFF orientation tag (as EXIF's) -> the transpose that shows the image upright.
_ORIENTATIONS = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
                 4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
                 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
                 8: Image.Transpose.ROTATE_90}


def _is_tiff(item) -> bool:
    if isinstance(item, EncodedImage):
        return item.data[:4] in _TIFF_MAGIC
    try:
        with open(item, "rb") as f:
            return f.read(4) in _TIFF_MAGIC
    except OSError:
        return False


def open_tiff(item) -> Image.Image:
    """The first page of a TIFF that Pillow cannot open (RGB or RGBA float samples: Pillow has
    float modes for one channel only), read with tifffile, as an 8-bit RGB PIL image upright.

    Floats must lie in [0, 1] (as Pillow's gray float TIFFs), 16-bit samples are scaled
    (65535 -> 255); alpha is dropped. Errors are ValueErrors naming the file.
    """
    where = str(item)
    try:
        import tifffile
    except ImportError:
        raise ValueError(f"{where} is a TIFF that Pillow cannot decode (RGB float samples?): "
                         "install tifffile (pip install tifffile) to read it.") from None
    try:
        with tifffile.TiffFile(io.BytesIO(item.data) if isinstance(item, EncodedImage) else item) as tif:
            page = tif.pages[0]
            _check_pixels(page.shape, page.axes, where)
            values, axes = page.asarray(), page.axes
            tag = page.tags.get(274)  # Orientation
            orientation = 1 if tag is None else tag.value
    except (ValueError, OSError, KeyError, IndexError, TypeError, MemoryError) as exc:
        raise ValueError(f"{where} is a TIFF easytl cannot decode: {exc}") from None
    image = Image.fromarray(_samples_to_rgb(values, axes, where), "RGB")
    transpose = _ORIENTATIONS.get(orientation)
    return image if transpose is None else image.transpose(transpose)


def _check_pixels(shape, axes: str, where: str) -> None:
    """Pillow's decompression-bomb limit, before any pixel is decoded."""
    pixels = int(np.prod([n for n, axis in zip(shape, axes) if axis in "YX"]))
    limit = Image.MAX_IMAGE_PIXELS
    if limit and pixels > 2 * limit:
        raise Image.DecompressionBombError(f"{where} has {pixels:,} pixels, over twice Pillow's "
                                           f"decompression-bomb limit ({limit:,}).")


def _samples_to_rgb(values: np.ndarray, axes: str, where: str) -> np.ndarray:
    """A TIFF page's samples (axes such as YXS, SYX, YX) as uint8 (H, W, 3)."""
    if "S" in axes:
        values = np.moveaxis(values, axes.index("S"), -1)
    else:
        values = values[..., None]
    while values.ndim > 3 and values.shape[0] == 1:  # e.g. a single plane of a depth axis
        values = values[0]
    if values.ndim != 3 or values.shape[-1] not in (1, 2, 3, 4):
        raise ValueError(f"{where} is a TIFF of shape {values.shape} ({axes}): easytl reads gray, "
                         "RGB and RGBA images.")
    values = values[..., :1] if values.shape[-1] <= 2 else values[..., :3]  # alpha dropped
    if np.issubdtype(values.dtype, np.floating):
        rgb = _unit_floats_to_uint8(values, where)
    elif values.dtype == np.uint16:
        rgb = np.rint(values / 257.0).astype(np.uint8)
    elif values.dtype in (np.uint8, np.bool_):
        rgb = values.astype(np.uint8) * (255 if values.dtype == np.bool_ else 1)
    else:
        raise ValueError(f"{where} is a TIFF of {values.dtype} samples: easytl reads 8- and "
                         "16-bit and float ([0, 1]) TIFFs. Re-save it as 8 or 16 bits.")
    return np.ascontiguousarray(np.broadcast_to(rgb, rgb.shape[:2] + (3,)))


def _unit_floats_to_uint8(values: np.ndarray, where: str) -> np.ndarray:
    """Float pixels in [0, 1] -> uint8; anything else is a ValueError naming the values found."""
    if values.dtype == np.float16:
        values = values.astype(np.float32)
    if not np.isfinite(values).all():
        raise ValueError(f"{where} is a float image with NaN or infinite values.")
    low, high = float(values.min()), float(values.max())
    if low < 0.0 or high > 1.0:
        raise ValueError(f"{where} is a float image with values in [{low:.3g}, {high:.3g}]; "
                         "easytl reads float images in [0, 1]. Rescale it, or re-save it as "
                         "an 8- or 16-bit image.")
    return np.rint(values * 255.0).astype(np.uint8)


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
        gray = _unit_floats_to_uint8(np.asarray(image, dtype=np.float32), where)
        return np.repeat(gray[..., None], 3, axis=2)
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")  # the documented route; converting straight to RGB warns
    return np.array(image.convert("RGB"), copy=True)


def decode_image(item, min_side: int | None = None) -> torch.Tensor:
    """Decode a path or :class:`EncodedImage` to uint8 (3, H, W); errors are Pillow's own.

    With ``min_side``, a JPEG is decoded at the smallest DCT scale (1, 1/2, 1/4,
    1/8) that leaves both sides at least ``min_side`` px; other formats, and
    JPEGs too small to shrink, decode in full. The EXIF orientation applies
    either way (the scale does not depend on it: the request is square).
    """
    with open_image(item) as image:
        if min_side:
            image.draft(None, (int(min_side), int(min_side)))  # a no-op for non-JPEG formats
        return to_uint8_chw(image, where=str(item))


def read_image_file(path, min_side: int | None = None) -> torch.Tensor:
    """Decode an image file (or :class:`EncodedImage`) to a uint8 (3, H, W) tensor, with a clear
    error if it cannot be read; ``min_side`` as in :func:`decode_image`."""
    try:
        return decode_image(path, min_side)
    except FileNotFoundError:
        raise FileNotFoundError(f"image file not found: {path}") from None
    except DECODE_ERRORS as exc:
        raise ValueError(f"cannot read image file {path}: {reason_for(exc, path)}. Remove or "
                         "re-save it.") from None


class UnreadableImagesError(ValueError):
    """Image files that cannot be decoded; ``bad`` lists (path, reason)."""

    def __init__(self, message: str, bad: list):
        super().__init__(message)
        self.bad = bad


EMPTY_FILE = "empty file (0 bytes)"


def _is_empty(item) -> bool:
    if isinstance(item, EncodedImage):
        return len(item.data) == 0
    try:
        return os.path.getsize(item) == 0
    except (OSError, TypeError, ValueError):
        return False


def reason_for(exc: BaseException, path) -> str:
    """The words for why ``path`` could not be decoded, from the exception decoding raised."""
    if isinstance(exc, FileNotFoundError):
        return "file not found"
    if isinstance(exc, IsADirectoryError):
        return "is a directory"
    if _is_empty(path):  # the same words as the server's ("is empty (0 bytes)")
        return EMPTY_FILE
    if isinstance(exc, UnidentifiedImageError):
        return ("not an image file" if Path(str(path)).suffix.lower() not in IMAGE_EXTENSIONS
                else "not a readable image (corrupted, or a format Pillow cannot decode)")
    return str(exc) or type(exc).__name__


def unreadable_reason(path) -> str | None:
    """Why an image file cannot be used (missing, not an image, truncated, empty), or None."""
    try:
        with open_image(path) as image:
            image.draft("RGB", (64, 64))  # JPEG decodes at reduced scale but still reads it all
            image.load()
            if image.width == 0 or image.height == 0:
                return "the image has zero size"
            pil_to_rgb(image)  # the conversion training will do (16-bit, float range, EXIF)
    except DECODE_ERRORS as exc:
        return reason_for(exc, path)
    return None


def decode_threads() -> int:
    """Threads that decode image files at once (Pillow releases the GIL while decoding)."""
    return min(8, os.cpu_count() or 1)


def find_unreadable(paths: Sequence, workers: int | None = None,
                    verbose: int = 0) -> list[tuple[Path, str]]:
    """Decode every file once (in threads: PIL releases the GIL) and return (path, reason)
    for each one that cannot be used, in the order given."""
    from concurrent.futures import ThreadPoolExecutor

    from ..progress import progress
    paths = [p if isinstance(p, EncodedImage) else Path(p) for p in paths]
    with ThreadPoolExecutor(max_workers=workers or decode_threads()) as pool:
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
