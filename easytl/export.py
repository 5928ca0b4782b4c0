"""Export a fitted model as one self-contained graph: images in, probabilities out.

The graph takes a batch of uint8 RGB images shaped (N, H, W, 3), the layout
every image decoder returns, of any size; inside it resizes them to the
model's input size the way easytl does (antialiased bilinear, rounded to whole
pixel values), applies the backbone's normalisation, runs backbone and head in
fp32, divides the logits by the fitted temperature and returns softmax
probabilities (N, n_classes) in ``classes`` order, equal to ``predict_proba``
(multi-label models: one sigmoid per class). The class labels, whether the
model is multi-label and its per-class thresholds travel with the file (ONNX
metadata ``classes``, ``multi_label``, ``thresholds`` / TorchScript extra files
``classes.json``, ...), so a deployment needs nothing from easytl.
"""

from __future__ import annotations

import copy
import json
import re
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .constants import EXPORT_FORMATS
from .io import atomic_file

ONNX_OPSET = 18  # the first opset whose Resize supports antialiasing
ONNX_MIN_TORCH = (2, 5)  # torch.onnx.export(dynamo=True), the exporter used here


class ImagePredictor(nn.Module):
    """uint8 (N, H, W, 3) images → class probabilities, preprocessing included."""

    def __init__(self, model: nn.Module, image_size: int, mean, std, temperature=1.0,
                 multi_label: bool = False):
        super().__init__()
        self.model = model
        self.image_size = int(image_size)
        self.multi_label = bool(multi_label)
        self.register_buffer("temperature", torch.as_tensor(temperature, dtype=torch.float32))
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.permute(0, 3, 1, 2).float()
        x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear",
                          antialias=True, align_corners=False).round().clamp(0, 255)
        x = (x / 255.0 - self.mean) / self.std
        logits = self.model(x).float() / self.temperature
        return torch.sigmoid(logits) if self.multi_label else torch.softmax(logits, dim=1)


def predictor_for(classifier) -> ImagePredictor:
    """The :class:`ImagePredictor` of a fitted ``TransferClassifier`` (fp32, on the CPU, eval mode)."""
    model = classifier.model_
    config = model.backbone.data_config
    model = copy.deepcopy(model).float().cpu().eval().to(memory_format=torch.contiguous_format)
    for p in model.parameters():
        p.requires_grad_(False)
    return ImagePredictor(model, classifier.image_size_, config["mean"], config["std"],
                          getattr(classifier, "temperature_", 1.0),
                          getattr(classifier, "multi_label_", False)).eval()


def export_model(classifier, path, format: str = "onnx") -> Path:
    """Write a fitted classifier as an ONNX or TorchScript file (written atomically).

    Parameters
    ----------
    classifier : fitted TransferClassifier
    path : str or Path
        The file to write.
    format : {"onnx", "torchscript"}

    Returns
    -------
    Path of the written file.
    """
    if format not in EXPORT_FORMATS:
        raise ValueError(f"format must be one of {EXPORT_FORMATS}, got {format!r}.")
    if not hasattr(classifier, "model_"):
        raise ValueError("the classifier is not fitted: fit it (or load a model file) before export.")
    predictor = predictor_for(classifier)
    classes = json.dumps([c.item() if hasattr(c, "item") else c for c in classifier.classes_])
    thresholds = getattr(classifier, "thresholds_", None)
    extra = {"classes": classes, "multi_label": json.dumps(bool(predictor.multi_label))}
    if thresholds is not None:
        extra["thresholds"] = json.dumps(np.asarray(thresholds).tolist())
    size = classifier.image_size_
    example = torch.zeros(2, size, size, 3, dtype=torch.uint8)
    with atomic_file(path) as tmp:
        if format == "onnx":
            _write_onnx(predictor, example, tmp, extra)
        else:
            _write_torchscript(predictor, example, tmp, extra)
    return Path(path)


def _write_torchscript(predictor: ImagePredictor, example: torch.Tensor, path: str,
                       extra: dict) -> None:
    with torch.no_grad(), warnings.catch_warnings():
        # torch's own notices that TorchScript is deprecated (trace, trace_method, save): not the
        # user's to act on, and the CLI would print each as "easytl: warning".
        for category in (FutureWarning, DeprecationWarning):
            warnings.filterwarnings("ignore", message=r"`torch\.jit\.", category=category)
        traced = torch.jit.trace(predictor, example, check_trace=False)
        torch.jit.save(traced, path, _extra_files={f"{key}.json": value for key, value in extra.items()})


def torch_supports_onnx_export(version: str | None = None) -> bool:
    """Whether this torch has the exporter used here: ``torch.onnx.export(..., dynamo=True)``
    returning an ONNX program came with torch 2.5 (the ``onnx`` extra requires it)."""
    match = re.match(r"(\d+)\.(\d+)", str(torch.__version__ if version is None else version))
    return match is not None and (int(match[1]), int(match[2])) >= ONNX_MIN_TORCH


def _write_onnx(predictor: ImagePredictor, example: torch.Tensor, path: str, extra: dict) -> None:
    if not torch_supports_onnx_export():
        raise ImportError(f"ONNX export needs torch >= {'.'.join(map(str, ONNX_MIN_TORCH))} (its "
                          f"dynamo exporter); this is torch {torch.__version__}. Upgrade it (pip "
                          "install 'easytl[onnx]' does), or export with format='torchscript'.")
    try:
        import onnx
        import onnxscript  # noqa: F401  (torch.onnx's exporter needs it)
    except ImportError:
        raise ImportError("ONNX export needs the onnx extra: pip install 'easytl[onnx]'") from None
    batch, height, width = (torch.export.Dim("batch", min=1), torch.export.Dim("height", min=2),
                            torch.export.Dim("width", min=2))
    with torch.no_grad():
        program = torch.onnx.export(predictor, (example,), input_names=["images"],
                                    output_names=["probabilities"], opset_version=ONNX_OPSET,
                                    dynamic_shapes={"images": {0: batch, 1: height, 2: width}},
                                    dynamo=True, verbose=False)
    program.save(path)
    model = onnx.load(path)
    for key, value in extra.items():
        model.metadata_props.add(key=key, value=value)
    model.metadata_props.add(key="producer", value="easytl")
    onnx.save(model, path)
