"""The HTTP service of ``easytl serve``: a FastAPI app around one fitted classifier.

Endpoints: ``POST /predict`` (multipart files or base64 JSON → labels, top-k
calibrated probabilities, "unknown" on request), ``POST /explain`` (a Grad-CAM
overlay), ``GET /health`` (with batching counters), ``GET /model`` and
``GET /`` (a self-contained page to try the model in a browser).
"""

# No "from __future__ import annotations" here: FastAPI reads the endpoints' annotations
# (Request) at run time, from this module's names.
import contextlib
import copy

from .batching import DynamicBatcher
from .requests import Limits, read_request
from .service import Service
from .uploads import UploadError


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


def create_app(model, *, max_batch: int = 32, max_wait_ms: float = 5.0, max_upload_mb: float = 32.0,
               max_images: int = 64, max_pixels: int = 40_000_000):
    """A FastAPI app serving a fitted classifier.

    Parameters
    ----------
    model : str, Path or TransferClassifier
        A model file written by ``save`` (loaded with ``TransferClassifier.load``), or a
        fitted classifier (served from a copy of its network: the estimator itself, its
        ``verbose`` setting and its network's device and layout, are left as they are).
    max_batch, max_wait_ms : int, float
        Dynamic batching: one forward pass takes up to ``max_batch`` images, waiting at
        most ``max_wait_ms`` after the first for others to arrive.
    max_upload_mb, max_images, max_pixels : float, int, int
        Limits on one request's body, its number of images and one image's pixels.

    Returns
    -------
    fastapi.FastAPI
    """
    from ... import __version__
    from .model import ServedModel
    limits = Limits(max_upload_mb, max_images, max_pixels)
    served = ServedModel(served_classifier(model))
    batcher = DynamicBatcher(served.forward, max_batch=max_batch, max_wait_ms=max_wait_ms)
    service = Service(served, batcher, limits, __version__)
    app = _fastapi_app(service, __version__)
    app.state.served, app.state.batcher, app.state.limits = served, batcher, limits
    app.state.service = service
    return app


def served_classifier(model):
    """The classifier to serve: a model file loaded, or a shallow copy of a fitted one (its
    settings stay the caller's; :class:`~.model.ServedModel` copies the network)."""
    if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__"):
        from ...classifier import TransferClassifier
        clf = TransferClassifier.load(model)
    else:
        clf = copy.copy(model)
    clf.verbose = 0
    return clf


def _fastapi_app(service: Service, version: str):
    """The FastAPI app: the batcher's lifespan, the body limit, the error answers, the routes."""
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await service.batcher.start()
        yield
        await service.batcher.stop()

    # No /docs or /redoc: FastAPI's pages load their scripts from a CDN, and the service must
    # work offline and never make a browser fetch remote code (/openapi.json stays).
    app = FastAPI(title="easytl", version=version, lifespan=lifespan, docs_url=None,
                  redoc_url=None, description="Image classification with a model fitted by easytl.")
    max_bytes = service.limits.max_bytes
    app.add_middleware(BodyLimit, max_bytes=max_bytes)

    @app.exception_handler(UploadError)
    async def refused(request, exc: UploadError):
        rows = {} if exc.rows is None else {"predictions": exc.rows, "errors": len(exc.rows)}
        return JSONResponse({"detail": exc.message, **rows}, status_code=exc.status)

    @app.exception_handler(_BodyTooLarge)
    async def too_large(request, exc):
        return JSONResponse({"detail": _too_large_message(max_bytes)}, status_code=413,
                            headers={"Connection": "close"})

    _add_routes(app, service)
    return app


def _add_routes(app, service: Service) -> None:
    from fastapi import Request
    from fastapi.responses import HTMLResponse
    from starlette.concurrency import run_in_threadpool

    from .page import PAGE

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page():
        return HTMLResponse(PAGE)

    @app.get("/health")
    async def health():
        """``status`` and the batching counters (requests, images, forward passes)."""
        return service.health()

    @app.get("/model")
    async def model_info():
        """What the served model is: classes, input size, backbone, easytl version."""
        return service.info()

    @app.post("/predict")
    async def predict(request: Request):
        """Labels and top-k calibrated probabilities of one or more images.

        Send images as multipart file fields named ``files`` or as JSON
        ``{"images": [base64, ...]}``; options ``top_k`` (default 5) and
        ``reject_unknown`` (label images unlike the training set "unknown") go in the
        query string, the form or the JSON object. One row per image, in the order
        sent; an image that cannot be read gets ``{"name", "error", "status"}`` in its
        row and the others are answered (200); when none can be, a 4xx.
        """
        images, options = await read_request(request, service.limits)
        return await service.predict(images, options, run=run_in_threadpool)

    @app.post("/explain")
    async def explain(request: Request):
        """Grad-CAM of one image (sent as to ``/predict``) for its most probable class:
        ``{"name", "label", "probability", "overlay": "data:image/png;base64,..."}``."""
        images, _ = await read_request(request, service.limits)
        return await service.explain(images, run=run_in_threadpool)
