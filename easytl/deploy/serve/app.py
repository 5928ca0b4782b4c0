"""The HTTP service of ``easytl serve``: a FastAPI app around one fitted classifier.

Endpoints: ``POST /predict`` (multipart files or base64 JSON → labels, top-k
calibrated probabilities, "unknown" on request), ``POST /explain`` (a Grad-CAM
overlay), ``GET /health`` (with batching counters), ``GET /model`` and
``GET /`` (a self-contained page to try the model in a browser).
"""

# No "from __future__ import annotations" here: FastAPI reads the endpoints' annotations
# (Request) at run time, from this module's names.
import base64
import contextlib
import copy
import io
import json
from dataclasses import asdict, dataclass

import numpy as np
import torch

from .batching import DynamicBatcher
from .uploads import UploadError, decode_upload, from_base64

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


class _BodyTooLarge(Exception):
    pass


class BodyLimit:
    """ASGI middleware: refuse a request body over ``max_bytes`` (declared or streamed) with 413."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            from fastapi.responses import JSONResponse
            response = JSONResponse({"detail": _too_large_message(self.max_bytes)}, status_code=413,
                                    headers={"Connection": "close"})
            return await response(scope, receive, send)
        seen = 0

        async def limited_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _BodyTooLarge()
            return message
        return await self.app(scope, limited_receive, send)


def _too_large_message(max_bytes: int) -> str:
    return (f"the request is over this server's upload limit of {max_bytes / 2 ** 20:g} MB: send "
            "fewer or smaller images per request (or start it with a larger --max-upload-mb).")


def _plain(value):
    """A JSON-ready label: numpy scalars become Python numbers."""
    return value.item() if isinstance(value, np.generic) else value


def _flag(value, name: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise UploadError(422, f"{name} must be true or false, got {value!r}.")


def _count(value, name: str) -> int:
    try:
        number = int(value)
        if isinstance(value, float) and number != value:
            raise ValueError
    except (TypeError, ValueError):
        raise UploadError(422, f"{name} must be a whole number >= 1, got {value!r}.") from None
    if number < 1:
        raise UploadError(422, f"{name} must be a whole number >= 1, got {value!r}.")
    return number


def create_app(model, *, max_batch: int = 32, max_wait_ms: float = 5.0, max_upload_mb: float = 32.0,
               max_images: int = 64, max_pixels: int = 40_000_000):
    """A FastAPI app serving a fitted classifier.

    Parameters
    ----------
    model : str, Path or TransferClassifier
        A model file written by ``save`` (loaded with ``TransferClassifier.load``), or a
        fitted classifier (used as it is; its ``verbose`` setting is not changed).
    max_batch, max_wait_ms : int, float
        Dynamic batching: one forward pass takes up to ``max_batch`` images, waiting at
        most ``max_wait_ms`` after the first for others to arrive.
    max_upload_mb, max_images, max_pixels : float, int, int
        Limits on one request's body, its number of images and one image's pixels.

    Returns
    -------
    fastapi.FastAPI
    """
    from fastapi import FastAPI, Request
    from fastapi.responses import HTMLResponse, JSONResponse
    from starlette.concurrency import run_in_threadpool

    from ... import __version__
    from .model import ServedModel
    from .page import PAGE

    limits = Limits(max_upload_mb, max_images, max_pixels)
    if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__"):
        from ...classifier import TransferClassifier
        clf = TransferClassifier.load(model)
    else:
        clf = copy.copy(model)  # the caller's estimator keeps its own settings
    clf.verbose = 0
    served = ServedModel(clf)
    batcher = DynamicBatcher(served.forward, max_batch=max_batch, max_wait_ms=max_wait_ms)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await batcher.start()
        yield
        await batcher.stop()

    # No /docs or /redoc: FastAPI's pages load their scripts from a CDN, and the service must
    # work offline and never make a browser fetch remote code (/openapi.json stays).
    app = FastAPI(title="easytl", version=__version__, lifespan=lifespan, docs_url=None,
                  redoc_url=None, description="Image classification with a model fitted by easytl.")
    app.add_middleware(BodyLimit, max_bytes=limits.max_bytes)
    app.state.served, app.state.batcher, app.state.limits = served, batcher, limits

    @app.exception_handler(UploadError)
    async def refused(request, exc: UploadError):
        return JSONResponse({"detail": exc.message}, status_code=exc.status)

    @app.exception_handler(_BodyTooLarge)
    async def too_large(request, exc):
        return JSONResponse({"detail": _too_large_message(limits.max_bytes)}, status_code=413,
                            headers={"Connection": "close"})

    async def read_request(request: Request) -> tuple[list[tuple[str, bytes]], dict]:
        """(name, bytes) of each image and the options, from multipart or JSON."""
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        options = {k: v for k, v in request.query_params.items() if k in OPTION_FIELDS}
        unknown = [k for k in request.query_params if k not in OPTION_FIELDS]
        if unknown:
            raise UploadError(400, f"unknown query parameter {unknown[0]!r}: use "
                                   f"{' or '.join(OPTION_FIELDS)}.")
        if kind == "multipart/form-data":
            images = await _read_form(request, options)
        elif kind == "application/json":
            images = await _read_json(request, options)
        else:
            raise UploadError(415, "send images as multipart/form-data file fields named 'files', "
                                   "or as JSON {\"images\": [base64, ...]}; got content type "
                                   f"{kind or 'none'!r}.")
        if not images:
            raise UploadError(400, "the request holds no images: send one or more in the "
                                   "'files' field (multipart) or the 'images' list (JSON).")
        if len(images) > limits.max_images:
            raise _too_many()
        return images, options

    def _too_many():
        return UploadError(413, f"too many images in one request (at most {limits.max_images}): "
                                "split them over several requests.")

    async def _read_form(request, options) -> list:
        from starlette.exceptions import HTTPException
        try:
            form = await request.form(max_files=limits.max_images, max_fields=len(OPTION_FIELDS))
        except HTTPException as exc:
            detail = str(exc.detail)
            if "Too many files" in detail:
                raise _too_many() from None
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

    async def _read_json(request, options) -> list:
        try:
            body = json.loads(await request.body())
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
            raise _too_many()
        return [(f"images[{i}]", from_base64(item, f"images[{i}]")) for i, item in enumerate(items)]

    def decode_all(images) -> torch.Tensor:
        return torch.stack([decode_upload(served, data, name, limits.max_pixels)
                            for name, data in images])

    def answer(name, proba, novelty, top_k, reject_unknown) -> dict:
        order = np.argsort(-proba, kind="stable")[:top_k]
        row = {"name": name,
               "top_k": [{"label": _plain(served.classes[i]), "probability": float(proba[i])}
                         for i in order]}
        if served.multi_label:
            chosen = served.clf._task.decide(proba[None], getattr(served.clf, "thresholds_", None))[0]
            row["labels"] = [_plain(served.classes[i]) for i in np.flatnonzero(chosen)]
        else:
            row["label"] = _plain(served.classes[int(order[0])])
        if reject_unknown:
            unknown = bool(novelty > served.clf.unknown_threshold_)
            row.update(novelty=float(novelty), unknown=unknown)
            if unknown:
                row["labels" if served.multi_label else "label"] = (
                    ["unknown"] if served.multi_label else "unknown")
        return row

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page():
        return HTMLResponse(PAGE)

    @app.get("/health")
    async def health():
        """``status`` and the batching counters (requests, images, forward passes)."""
        return {"status": "ok", **batcher.stats.as_dict()}

    @app.get("/model")
    async def model_info():
        """What the served model is: classes, input size, backbone, easytl version."""
        backbone = clf.backbone if isinstance(clf.backbone, str) else type(clf.backbone).__name__
        return {"classes": [_plain(c) for c in served.classes], "input_size": served.size,
                "backbone": backbone, "easytl_version": __version__,
                "multi_label": served.multi_label, "reject_unknown": served.has_novelty,
                # one temperature, or one per class (multi-label)
                "temperature": np.asarray(getattr(clf, "temperature_", 1.0), float).tolist(),
                "limits": {**asdict(limits), "max_batch": batcher.max_batch,
                           "max_wait_ms": batcher.max_wait * 1000.0}}

    @app.post("/predict")
    async def predict(request: Request):
        """Labels and top-k calibrated probabilities of one or more images.

        Send images as multipart file fields named ``files`` or as JSON
        ``{"images": [base64, ...]}``; options ``top_k`` (default 5) and
        ``reject_unknown`` (label images unlike the training set "unknown") go in the
        query string, the form or the JSON object.
        """
        images, options = await read_request(request)
        top_k = min(_count(options.get("top_k", DEFAULT_TOP_K), "top_k"), len(served.classes))
        reject_unknown = _flag(options.get("reject_unknown", False), "reject_unknown")
        if reject_unknown and not served.has_novelty:
            raise UploadError(400, "this model has no novelty statistics, so reject_unknown is "
                                   "not available (fit it again with easytl >= 0.2).")
        batch = await run_in_threadpool(decode_all, images)
        outputs = await batcher.submit(batch)
        novelty = outputs.novelty if outputs.novelty is not None else np.zeros(len(batch))
        return {"predictions": [answer(name, p, n, top_k, reject_unknown)
                                for (name, _), p, n in zip(images, outputs.proba, novelty)]}

    @app.post("/explain")
    async def explain(request: Request):
        """Grad-CAM of one image (sent as to ``/predict``) for its most probable class:
        ``{"name", "label", "probability", "overlay": "data:image/png;base64,..."}``."""
        images, options = await read_request(request)
        if len(images) != 1:
            raise UploadError(400, f"/explain takes one image, got {len(images)}.")
        name, data = images[0]
        image = await run_in_threadpool(decode_upload, served, data, name, limits.max_pixels)
        outputs = await batcher.submit(image[None])
        index = int(np.argmax(outputs.proba[0]))
        try:
            picture = await run_in_threadpool(served.explain, image, index)
        except ImportError:
            raise UploadError(501, "Grad-CAM overlays need matplotlib: pip install "
                                   "'easytl[serve]'.") from None
        return {"name": name, "label": _plain(served.classes[index]),
                "probability": float(outputs.proba[0][index]), "overlay": _png_data_url(picture)}

    return app


def _png_data_url(picture: np.ndarray, min_side: int = 224) -> str:
    """A uint8 (H, W, 3) picture as a PNG data URL, enlarged to ``min_side`` for the page."""
    from PIL import Image
    image = Image.fromarray(picture)
    if min(image.size) < min_side:
        scale = min_side / min(image.size)
        image = image.resize((round(image.width * scale), round(image.height * scale)),
                             Image.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
