"""What the endpoints answer, without HTTP: :class:`Service` around a served model and a batcher.

``create_app`` (:mod:`.app`) only reads requests and hands their images to these
methods, so each answer (predictions, Grad-CAM, health, model description) can
be tested by calling it with decoded images.
"""

from __future__ import annotations

import base64
import io
from dataclasses import asdict

import numpy as np
import torch

from ...trust.unknown import decide
from .batching import DynamicBatcher
from .requests import Limits, parse_options
from .uploads import UploadError, decode_upload


def plain(value):
    """A JSON-ready label: numpy scalars become Python numbers."""
    return value.item() if isinstance(value, np.generic) else value


class Service:
    """The answers of one served model (:class:`~.model.ServedModel`), batched by ``batcher``."""

    def __init__(self, served, batcher: DynamicBatcher, limits: Limits, version: str):
        self.served, self.batcher, self.limits, self.version = served, batcher, limits, version

    def decode_one(self, name: str, data) -> torch.Tensor:
        """One (name, bytes) upload → uint8 (3, size, size), or the UploadError that refuses it
        (``data`` may be that error already: the request could not carry the image)."""
        if isinstance(data, UploadError):
            raise data
        return decode_upload(self.served, data, name, self.limits.max_pixels)

    def decode_each(self, images: list[tuple[str, bytes]]) -> list:
        """Each upload's uint8 tensor, or the UploadError that refuses it, in the order sent."""
        decoded = []
        for name, data in images:
            try:
                decoded.append(self.decode_one(name, data))
            except UploadError as error:
                decoded.append(error)
        return decoded

    async def predict(self, images: list[tuple[str, bytes]], options: dict, run=None) -> dict:
        """``{"predictions": [row, ...], "errors": k}``, one row per upload in the order sent:
        :meth:`answer` for an image that could be decoded, ``{"name", "error", "status"}`` for
        one that could not (``errors`` counts those). When none could be, an UploadError with
        every reason (see :func:`none_answered`). ``run(f, *args)``: where decoding runs (the
        app: a thread pool; default: here)."""
        top_k, reject_unknown = parse_options(options, len(self.served.classes),
                                              self.served.has_novelty)
        decoded = await _call(run, self.decode_each, images)
        good = [i for i, item in enumerate(decoded) if not isinstance(item, UploadError)]
        if not good:
            raise none_answered(images, decoded)
        outputs = await self.batcher.submit(torch.stack([decoded[i] for i in good]))
        novelty = outputs.novelty if outputs.novelty is not None else np.zeros(len(good))
        rows = [error_row(name, item) if isinstance(item, UploadError) else None
                for (name, _), item in zip(images, decoded)]
        for i, p, n in zip(good, outputs.proba, novelty):
            rows[i] = self.answer(images[i][0], p, n, top_k, reject_unknown)
        return {"predictions": rows, "errors": len(rows) - len(good)}

    def answer(self, name: str, proba: np.ndarray, novelty: float, top_k: int,
               reject_unknown: bool) -> dict:
        """One image's row: its top-k classes and probabilities, its label (multi-label: its
        labels), and with ``reject_unknown`` its novelty score and whether it is unknown."""
        served = self.served
        order = np.argsort(-proba, kind="stable")[:top_k]
        row = {"name": name,
               "top_k": [{"label": plain(served.classes[i]), "probability": float(proba[i])}
                         for i in order]}
        decision = decide(proba[None], np.asarray([novelty]) if reject_unknown else None,
                          served.thresholds, multi_label=served.multi_label,
                          unknown_threshold=served.unknown_threshold)
        if served.multi_label:
            row["labels"] = [plain(served.classes[i]) for i in np.flatnonzero(decision.classes[0])]
        else:
            row["label"] = plain(served.classes[int(decision.classes[0])])
        if reject_unknown:
            unknown = bool(decision.unknown[0])
            row.update(novelty=float(novelty), unknown=unknown)
            if unknown:
                row["labels" if served.multi_label else "label"] = (
                    ["unknown"] if served.multi_label else "unknown")
        return row

    async def explain(self, images: list[tuple[str, bytes]], run=None) -> dict:
        """Grad-CAM of one upload for its most probable class: ``{"name", "label",
        "probability", "overlay": "data:image/png;base64,..."}``."""
        if len(images) != 1:
            raise UploadError(400, f"/explain takes one image, got {len(images)}.")
        name, data = images[0]
        image = await _call(run, self.decode_one, name, data)  # refused as /predict refuses it
        outputs = await self.batcher.submit(image[None])
        index = int(np.argmax(outputs.proba[0]))
        try:
            picture = await _call(run, self.served.explain, image, index)
        except ImportError:
            raise UploadError(501, "Grad-CAM overlays need matplotlib: pip install "
                                   "'easytl[serve]'.") from None
        return {"name": name, "label": plain(self.served.classes[index]),
                "probability": float(outputs.proba[0][index]), "overlay": png_data_url(picture)}

    def health(self) -> dict:
        """``status`` and the batching counters (requests, images, forward passes)."""
        return {"status": "ok", **self.batcher.stats.as_dict()}

    def info(self) -> dict:
        """What the served model is: classes, input size, backbone, easytl version, limits."""
        served, batcher = self.served, self.batcher
        return {"classes": [plain(c) for c in served.classes], "input_size": served.size,
                "backbone": served.backbone, "easytl_version": self.version,
                "multi_label": served.multi_label, "reject_unknown": served.has_novelty,
                # one temperature, or one per class (multi-label)
                "temperature": np.asarray(served.temperature, float).tolist(),
                "limits": {**asdict(self.limits), "max_batch": batcher.max_batch,
                           "max_wait_ms": batcher.max_wait * 1000.0}}


def error_row(name: str, error: UploadError) -> dict:
    """The row of an upload the server could not answer: why, and the status it alone would get."""
    return {"name": name, "error": error.message, "status": error.status}


def none_answered(images: list, errors: list) -> UploadError:
    """The error of a request none of whose images could be decoded: one image's own error, or
    every reason (the status all share, else 400), with the rows of :func:`error_row`."""
    rows = [error_row(name, e) for (name, _), e in zip(images, errors)]
    if len(errors) == 1:
        return UploadError(errors[0].status, errors[0].message, rows)
    statuses = {e.status for e in errors}
    return UploadError(statuses.pop() if len(statuses) == 1 else 400,
                       f"none of the {len(errors)} images could be read: "
                       + " ".join(e.message for e in errors), rows)


async def _call(run, function, *args):
    return function(*args) if run is None else await run(function, *args)


def png_data_url(picture: np.ndarray, min_side: int = 224) -> str:
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
