"""Uploaded images → uint8 tensors, with every way an upload can be bad answered by a 4xx.

Nothing about an upload may crash the server or reach the model unchecked: the
image's size is read from its header before any pixel is decoded (a 30,000 ×
30,000 PNG compresses to a few kilobytes and would need 2.7 GB once decoded),
and decoding errors of any kind become a message naming the image.
"""

from __future__ import annotations

import base64
import binascii

import torch
from PIL import Image

from ...data.images import EncodedImage, open_image


class UploadError(Exception):
    """A request the server refuses, with the HTTP status and the message the client gets;
    ``rows``: the per-image rows (``{"name", "error", "status"}``) when images were refused."""

    def __init__(self, status: int, message: str, rows: list | None = None):
        super().__init__(message)
        self.status, self.message, self.rows = status, message, rows


def from_base64(text, name: str) -> bytes:
    """The bytes of a base64 string (a ``data:image/...;base64,`` URL prefix is allowed)."""
    if not isinstance(text, str):
        raise UploadError(400, f"{name} must be a base64 string, got {type(text).__name__}.")
    if text.startswith("data:") and "," in text:
        text = text.split(",", 1)[1]
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise UploadError(400, f"{name} is not valid base64: encode the image file's bytes "
                               "with standard base64.") from None


def check_header(data: bytes, name: str, max_pixels: int) -> None:
    """Refuse empty data, non-images and images over ``max_pixels``, from the header alone."""
    if not data:
        raise UploadError(400, f"{name} is empty (0 bytes): send the image file's contents.")
    try:
        with open_image(EncodedImage(data, name)) as image:
            width, height = image.size
    except Image.DecompressionBombError:  # over twice Pillow's own limit: refused by Image.open
        raise UploadError(413, f"{name} is too large to decode (over Pillow's decompression-bomb "
                               "limit): send a smaller image.") from None
    except Exception as exc:  # noqa: BLE001 - untrusted bytes: whatever Pillow raises is the upload's
        raise UploadError(400, f"{name} is not an image this server can read "
                               f"({type(exc).__name__}): send a JPEG, PNG, WebP, BMP, GIF or "
                               "TIFF file.") from None
    if width * height > max_pixels:
        raise UploadError(413, f"{name} is {width} x {height} = {width * height:,} pixels, over "
                               f"this server's limit of {max_pixels:,}: send a smaller image "
                               "(or start the server with a larger --max-pixels).")


def decode_upload(model, data: bytes, name: str, max_pixels: int) -> torch.Tensor:
    """One uploaded image → uint8 (3, size, size) at the model's input size, or UploadError."""
    check_header(data, name, max_pixels)
    try:
        return model.decode(data, name)
    except Image.DecompressionBombError as exc:
        raise UploadError(413, f"{name} is too large to decode: {exc}") from None
    except MemoryError:
        raise UploadError(413, f"{name} is too large to decode on this server.") from None
    except Exception as exc:  # noqa: BLE001 - truncated data, broken pixels, odd modes, any Pillow error
        raise UploadError(400, f"{name} could not be decoded: {exc}") from None
