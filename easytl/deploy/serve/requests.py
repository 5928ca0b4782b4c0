"""What a request to ``/predict`` or ``/explain`` carries: images and options, or a 4xx.

Images come as multipart file fields named ``files`` (or ``file``) or as JSON
``{"images": [base64, ...]}``; the options ``top_k`` and ``reject_unknown`` in
the query string, the form or the JSON object. Each function here can be
tested without a server: :func:`read_request` needs only an object with
``headers``, ``query_params``, ``form()`` and ``body()`` (a Starlette request).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from .uploads import UploadError, from_base64

FILE_FIELDS = ("files", "file")       # multipart fields that carry images
OPTION_FIELDS = ("reject_unknown", "top_k")
DEFAULT_TOP_K = 5


@dataclass(frozen=True)
class Limits:
    """What one request may carry; anything over a limit is refused with a 413."""

    max_upload_mb: float = 32.0     # the whole request body
    max_images: int = 64            # images in one request
    max_pixels: int = 40_000_000    # width x height of one image, read from its header

    def __post_init__(self):
        if not (self.max_upload_mb > 0 and self.max_images >= 1 and self.max_pixels >= 1):
            raise ValueError(f"serving limits must be positive, got {self}.")

    @property
    def max_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


async def read_request(request, limits: Limits) -> tuple[list[tuple[str, bytes | UploadError]], dict]:
    """(name, bytes) of each image and the options (raw values), from multipart or JSON; an
    image that cannot be read from the request (bad base64) comes as (name, its UploadError)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    options = {k: v for k, v in request.query_params.items() if k in OPTION_FIELDS}
    unknown = [k for k in request.query_params if k not in OPTION_FIELDS]
    if unknown:
        raise UploadError(400, f"unknown query parameter {unknown[0]!r}: use "
                               f"{' or '.join(OPTION_FIELDS)}.")
    if kind == "multipart/form-data":  # parsed as it streams: its files are never all in memory
        images = await read_form(request, options, limits)
    else:
        body = await request.body()  # the body limit (app.BodyLimit) bounds it
        if not body.strip():  # `curl -X POST URL`: no images, whatever the content type says
            raise no_images()
        if kind != "application/json":
            raise UploadError(415, "send images as multipart/form-data file fields named 'files', "
                                   "or as JSON {\"images\": [base64, ...]}; got content type "
                                   f"{kind or 'none'!r}.")
        images = read_json(body, options, limits)
    if not images:
        raise no_images()
    if len(images) > limits.max_images:
        raise too_many(limits)
    return images, options


def no_images() -> UploadError:
    return UploadError(400, "the request holds no images: send one or more in the "
                            "'files' field (multipart) or the 'images' list (JSON).")


def too_many(limits: Limits) -> UploadError:
    return UploadError(413, f"too many images in one request (at most {limits.max_images}): "
                            "split them over several requests.")


async def read_form(request, options: dict, limits: Limits) -> list:
    """The images of a multipart body; its option fields go into ``options`` (the query
    string's win)."""
    from starlette.exceptions import HTTPException
    try:
        form = await request.form(max_files=limits.max_images, max_fields=len(OPTION_FIELDS))
    except HTTPException as exc:
        detail = str(exc.detail)
        if "Too many files" in detail:
            raise too_many(limits) from None
        raise UploadError(400, f"the multipart body cannot be read: {detail}") from None
    images = []
    try:
        for key, value in form.multi_items():
            is_file = not isinstance(value, str)
            if key in FILE_FIELDS and is_file:
                images.append((value.filename or f"{key}[{len(images)}]", await value.read()))
            elif key in OPTION_FIELDS and not is_file:
                options.setdefault(key, value)
            elif key in FILE_FIELDS:
                raise UploadError(400, f"field {key!r} must be a file upload, not text.")
            else:
                raise UploadError(400, f"unexpected field {key!r}: send images as file fields "
                                       "named 'files' (options: reject_unknown, top_k).")
    finally:
        await form.close()
    return images


def read_json(body: bytes, options: dict, limits: Limits) -> list:
    """The images of a JSON body ``{"images": [base64, ...]}`` (or ``{"image": base64}``); its
    option keys go into ``options`` (the query string's win)."""
    try:
        body = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UploadError(400, "the body is not valid JSON: send {\"images\": [base64, ...]}.") \
            from None
    if not isinstance(body, dict):
        raise UploadError(400, "the JSON body must be an object: {\"images\": [base64, ...]}.")
    extra = [k for k in body if k not in ("images", "image", *OPTION_FIELDS)]
    if extra:
        raise UploadError(400, f"unexpected key {extra[0]!r}: send {{\"images\": [base64, ...]}} "
                               "(options: reject_unknown, top_k).")
    for key in OPTION_FIELDS:
        if key in body:
            options.setdefault(key, body[key])
    items = body.get("images", [body["image"]] if "image" in body else None)
    if not isinstance(items, list):
        raise UploadError(400, "'images' must be a list of base64 strings.")
    if len(items) > limits.max_images:
        raise too_many(limits)
    return [(f"images[{i}]", _decoded_base64(item, f"images[{i}]")) for i, item in enumerate(items)]


def _decoded_base64(item, name: str):
    """An item's bytes, or the UploadError that refuses it: one bad item among good ones is
    refused in its own row of the answer, not for the whole request."""
    try:
        return from_base64(item, name)
    except UploadError as error:
        return error


def parse_options(options: dict, n_classes: int, has_novelty: bool) -> tuple[int, bool]:
    """``(top_k, reject_unknown)`` of a request's raw options: top_k at most the number of
    classes (default 5); reject_unknown refused for a model without novelty statistics."""
    top_k = min(count(options.get("top_k", DEFAULT_TOP_K), "top_k"), n_classes)
    reject_unknown = flag(options.get("reject_unknown", False), "reject_unknown")
    if reject_unknown and not has_novelty:
        raise UploadError(400, "this model has no novelty statistics, so reject_unknown is "
                               "not available (fit it again with easytl >= 0.2).")
    return top_k, reject_unknown


def flag(value, name: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise UploadError(422, f"{name} must be true or false, got {value!r}.")


def count(value, name: str) -> int:
    try:
        number = int(value)
        if isinstance(value, float) and number != value:
            raise ValueError
    except (TypeError, ValueError):
        raise UploadError(422, f"{name} must be a whole number >= 1, got {value!r}.") from None
    if number < 1:
        raise UploadError(422, f"{name} must be a whole number >= 1, got {value!r}.")
    return number
