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

When the classifier has novelty statistics (``novelty_``), the graph has a
second output ``novelty`` (N,): the score :meth:`novelty_score` gives, computed
in the graph from the pooled features (TorchScript: the method
``with_novelty``, returning both); the metadata key ``easytl`` (JSON) holds
``unknown_threshold``, the input size, normalisation, temperature, label form,
backbone and whether the file is int8. :class:`easytl.Predictor` reads all of
it and answers as the classifier does. ``quantize="int8"`` writes a
post-training int8 model (:mod:`easytl.quantization`); ``format="openvino"``
writes a folder (``model.xml``, ``model.bin``, ``easytl.json``).
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..constants import EXPORT_FORMATS
from ..io import atomic_file
from ..progress import progress, stage

ONNX_OPSET = 18  # the first opset whose Resize supports antialiasing
ONNX_MIN_TORCH = (2, 5)  # torch.onnx.export(dynamo=True), the exporter used here
EXPORT_VERSION = 1  # of the ``easytl`` metadata below; Predictor refuses newer ones
QUANTIZE_OPTIONS = (None, "int8")
DEFAULT_CALIBRATION_IMAGES = 300
OPENVINO_METADATA = "easytl.json"  # beside model.xml / model.bin


class NoveltyScore(nn.Module):
    """Pooled features → novelty scores (N,), as :meth:`NoveltyModel.score` computes them.

    ``min_k (f - m_k)' P (f - m_k)`` is rewritten with a factor ``P = L L'`` as
    ``min_k |f L - m_k L|²``: in float32 the expanded form ``f'Pf - 2 f'Pm + m'Pm``
    would cancel large terms, this one only subtracts nearby points.
    """

    def __init__(self, novelty):
        super().__init__()
        values, vectors = np.linalg.eigh(np.asarray(novelty.precision, dtype=np.float64))
        factor = vectors * np.sqrt(np.clip(values, 0.0, None))  # P = factor @ factor.T
        centres = np.asarray(novelty.means, dtype=np.float64) @ factor
        self.normalize = bool(novelty.normalize)
        self.register_buffer("factor", torch.as_tensor(factor, dtype=torch.float32))
        self.register_buffer("centres", torch.as_tensor(centres, dtype=torch.float32))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        features = features.float()
        if self.normalize:  # as NoveltyModel.score: unit-length features
            features = features / features.norm(dim=1, keepdim=True).clamp_min(1e-12)
        projected = features @ self.factor
        distance = ((projected[:, None, :] - self.centres[None]) ** 2).sum(-1)
        return distance.min(dim=1).values.sqrt()


class ImagePredictor(nn.Module):
    """uint8 (N, H, W, 3) images → class probabilities, preprocessing included."""

    def __init__(self, model: nn.Module, image_size: int, mean, std, temperature=1.0,
                 multi_label: bool = False, novelty=None):
        super().__init__()
        self.model = model
        self.novelty = None if novelty is None else NoveltyScore(novelty)
        self.image_size = int(image_size)
        self.multi_label = bool(multi_label)
        self.register_buffer("temperature", torch.as_tensor(temperature, dtype=torch.float32))
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        x = images.permute(0, 3, 1, 2).float()
        x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear",
                          antialias=True, align_corners=False).round().clamp(0, 255)
        return (x / 255.0 - self.mean) / self.std

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        logits = logits.float() / self.temperature
        return torch.sigmoid(logits) if self.multi_label else torch.softmax(logits, dim=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.probabilities(self.model(self.preprocess(images)))

    def with_novelty(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Probabilities and novelty scores, from one pass (features, then the head)."""
        return self.with_features(images)[:2]

    def with_features(self, images: torch.Tensor):
        """Probabilities, novelty scores and the pooled features they come from."""
        features = self.model.features(self.preprocess(images))
        return self.probabilities(self.model.head(features)), self.novelty(features), features


class _BothOutputs(nn.Module):
    """What the ONNX exporter traces: ``forward`` = :meth:`ImagePredictor.with_novelty`, and
    with ``features`` the pooled features as a third output (what int8 export re-fits the
    novelty threshold on; removed from the file it writes)."""

    def __init__(self, predictor: ImagePredictor, features: bool = False):
        super().__init__()
        self.predictor = predictor
        self.features = features

    def forward(self, images: torch.Tensor):
        outputs = self.predictor.with_features(images)
        return outputs if self.features else outputs[:2]


def predictor_for(classifier) -> ImagePredictor:
    """The :class:`ImagePredictor` of a fitted ``TransferClassifier`` (fp32, on the CPU, eval mode)."""
    model = classifier.model_
    config = model.backbone.data_config
    model = copy.deepcopy(model).float().cpu().eval().to(memory_format=torch.contiguous_format)
    for p in model.parameters():
        p.requires_grad_(False)
    return ImagePredictor(model, classifier.image_size_, config["mean"], config["std"],
                          getattr(classifier, "temperature_", 1.0),
                          getattr(classifier, "multi_label_", False),
                          getattr(classifier, "novelty_", None)).eval()


def export_model(classifier, path, format: str = "onnx", quantize=None, calibration=None, *,
                 n_calibration: int = DEFAULT_CALIBRATION_IMAGES, random_state: int = 0,
                 verbose: int | None = None) -> Path:
    """Write a fitted classifier as an ONNX or TorchScript file, or an OpenVINO folder.

    Parameters
    ----------
    classifier : fitted TransferClassifier
    path : str or Path
        The file to write (written atomically); for ``format="openvino"`` a folder,
        which gets ``model.xml``, ``model.bin`` and ``easytl.json``.
    format : {"onnx", "torchscript", "openvino"}
    quantize : None or "int8"
        "int8": post-training static quantization, calibrated on ``calibration``
        (ONNX: ONNX Runtime's QDQ with per-channel weights; OpenVINO: NNCF).
        TorchScript has no int8 path here and refuses it.
    calibration : images, optional
        What int8 calibrates on: any form ``predict`` takes (array, file list, folder,
        ...), ideally a few hundred training images. Required with ``quantize``: a
        fitted classifier does not keep its training or held-out images.
    n_calibration : int, default=300
        At most this many calibration images are used (a seeded random subset).
    random_state : int, default=0
        Seed of that subset.
    verbose : int, optional
        ``>= 1`` says on stderr what each long step is doing (the ONNX conversion,
        the int8 calibration; a bar where there is a count); default: the
        classifier's ``verbose``.

    Returns
    -------
    Path of the written file (or folder).
    """
    if format not in EXPORT_FORMATS:
        raise ValueError(f"format must be one of {EXPORT_FORMATS}, got {format!r}.")
    if quantize not in QUANTIZE_OPTIONS:
        raise ValueError(f"quantize must be None or 'int8', got {quantize!r}.")
    if quantize is not None and format == "torchscript":
        raise ValueError("quantize='int8' is available for format='onnx' and format='openvino'; "
                         "TorchScript exports are fp32 only.")
    if not hasattr(classifier, "model_"):
        raise ValueError("the classifier is not fitted: fit it (or load a model file) before export.")
    predictor = predictor_for(classifier)
    extra = export_metadata(classifier, predictor, format, quantize)
    size = classifier.image_size_
    example = torch.zeros(2, size, size, 3, dtype=torch.uint8)
    verbose = getattr(classifier, "verbose", 1) if verbose is None else verbose
    batches = None
    if quantize is not None:  # read (and check) the images before anything is written
        from .quantization import calibration_batches
        with stage("reading the calibration images", verbose):
            batches = calibration_batches(calibration, size, n_calibration, random_state)
    if format == "openvino":
        return _write_openvino(predictor, example, Path(path), extra, batches, verbose)
    with atomic_file(path) as tmp:
        if format == "onnx" and quantize is None:
            _write_onnx(predictor, example, tmp, extra, verbose=verbose)
        elif format == "onnx":
            from .quantization import quantize_onnx
            with tempfile.TemporaryDirectory() as folder:
                fp32 = str(Path(folder) / "fp32.onnx")
                with_features = predictor.novelty is not None
                _write_onnx(predictor, example, fp32, extra, features=with_features, verbose=verbose)
                with stage(f"quantizing to int8 on {_images(batches)} calibration images "
                           "(ONNX Runtime)", verbose):
                    quantize_onnx(fp32, tmp, batches)
                if with_features:
                    _set_int8_threshold(extra, _onnx_outputs(fp32), _onnx_outputs(tmp), batches,
                                        verbose)
                _set_onnx_metadata(tmp, extra, drop_outputs=("features",))
        else:
            with stage("tracing the network (TorchScript)", verbose):
                _write_torchscript(predictor, example, tmp, extra)
    return Path(path)


def _images(batches) -> int:
    return sum(len(images) for images in batches)


def _counted(run, bar):
    """``run`` (a graph's runner) that advances ``bar`` by the images of each batch it runs."""
    def counted(images):
        outputs = run(images)
        bar.update(len(images))
        return outputs
    return counted


def export_metadata(classifier, predictor: ImagePredictor, format: str, quantize=None) -> dict:
    """The strings an export carries (ONNX metadata, TorchScript extra files, OpenVINO JSON):
    ``classes``, ``multi_label``, ``thresholds`` (multi-label) and ``easytl``, a JSON object
    with what :class:`easytl.Predictor` needs beyond the graph."""
    from .. import __version__
    classes = json.dumps([c.item() if hasattr(c, "item") else c for c in classifier.classes_])
    thresholds = getattr(classifier, "thresholds_", None)
    extra = {"classes": classes, "multi_label": json.dumps(bool(predictor.multi_label))}
    if thresholds is not None:
        extra["thresholds"] = json.dumps(np.asarray(thresholds).tolist())
    config = classifier.model_.backbone.data_config
    threshold = getattr(classifier, "unknown_threshold_", None)
    backbone = classifier.backbone if isinstance(classifier.backbone, str) else \
        type(classifier.backbone).__name__
    extra["easytl"] = json.dumps({
        "export_version": EXPORT_VERSION, "easytl_version": __version__, "format": format,
        "quantize": quantize, "backbone": backbone, "image_size": int(classifier.image_size_),
        "mean": [float(v) for v in config["mean"]], "std": [float(v) for v in config["std"]],
        "temperature": np.asarray(getattr(classifier, "temperature_", 1.0)).tolist(),
        "label_form": getattr(classifier, "_label_form", "labels"),
        "novelty": predictor.novelty is not None,
        "unknown_threshold": None if threshold is None or predictor.novelty is None else float(threshold),
        # how the classifier's novelty model scores (older model files: raw features)
        "novelty_normalize": bool(getattr(getattr(classifier, "novelty_", None), "normalize", True)),
    })
    return extra


def _set_int8_threshold(extra: dict, fp32_run, int8_run, batches, verbose: int = 0) -> None:
    """Replace the fp32 unknown threshold in ``extra`` by the int8 model's, overall and per
    predicted class (:func:`easytl.quantization.int8_unknown_thresholds`), keeping the fp32
    one beside them. ``*_run(images) -> [probabilities, novelty, features]``."""
    from .quantization import graph_outputs, int8_unknown_thresholds
    info = json.loads(extra["easytl"])
    if info["unknown_threshold"] is None:
        return
    n = _images(batches)
    with progress(total=2 * n, desc=f"scoring the {n} calibration images fp32 and int8 (unknown "
                  "threshold)", verbose=verbose) as bar:
        proba, novelty32 = graph_outputs(_counted(fp32_run, bar), batches)[:2]
        novelty8 = graph_outputs(_counted(int8_run, bar), batches)[1]
    multi_label = json.loads(extra["multi_label"])
    if multi_label:  # the fp32 model's decisions label the calibration images
        cut = json.loads(extra["thresholds"]) if "thresholds" in extra else 0.5
        labels = (proba >= np.asarray(cut)).astype(np.float64)
    else:
        labels = proba.argmax(axis=1)
    overall, per_class = int8_unknown_thresholds(info["unknown_threshold"], novelty32, novelty8,
                                                 labels, proba.shape[1], per_class=not multi_label)
    info.update(unknown_threshold=overall, unknown_thresholds=per_class,
                unknown_threshold_fp32=info["unknown_threshold"])
    extra["easytl"] = json.dumps(info)


def _onnx_outputs(path: str):
    import onnxruntime as ort
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return lambda images: session.run(["probabilities", "novelty", "features"], {"images": images})


def _openvino_outputs(model):
    import openvino as ov
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})  # as Predictor
    return lambda images: [compiled(images)[compiled.output(name)]
                           for name in ("probabilities", "novelty", "features")]


def _set_onnx_metadata(path: str, extra: dict, drop_outputs=()) -> None:
    import onnx
    model = onnx.load(path)
    for output in [o for o in model.graph.output if o.name in drop_outputs]:
        model.graph.output.remove(output)
    del model.metadata_props[:]
    for key, value in extra.items():
        model.metadata_props.add(key=key, value=value)
    model.metadata_props.add(key="producer", value="easytl")
    onnx.save(model, path)


def _write_torchscript(predictor: ImagePredictor, example: torch.Tensor, path: str,
                       extra: dict) -> None:
    with torch.no_grad(), warnings.catch_warnings():
        # torch's own notices that TorchScript is deprecated (trace, trace_method, save): not the
        # user's to act on, and the CLI would print each as "easytl: warning".
        for category in (FutureWarning, DeprecationWarning):
            warnings.filterwarnings("ignore", message=r"`torch\.jit\.", category=category)
        methods = {"forward": example}
        if predictor.novelty is not None:
            methods["with_novelty"] = example
        traced = torch.jit.trace_module(predictor, methods, check_trace=False)
        torch.jit.save(traced, path, _extra_files={f"{key}.json": value for key, value in extra.items()})


def torch_supports_onnx_export(version: str | None = None) -> bool:
    """Whether this torch has the exporter used here: ``torch.onnx.export(..., dynamo=True)``
    returning an ONNX program came with torch 2.5 (the ``onnx`` extra requires it)."""
    match = re.match(r"(\d+)\.(\d+)", str(torch.__version__ if version is None else version))
    return match is not None and (int(match[1]), int(match[2])) >= ONNX_MIN_TORCH


def _write_onnx(predictor: ImagePredictor, example: torch.Tensor, path: str, extra: dict,
                features: bool = False, verbose: int = 0) -> None:
    if not torch_supports_onnx_export():
        raise ImportError(f"ONNX export needs torch >= {'.'.join(map(str, ONNX_MIN_TORCH))} (its "
                          f"dynamo exporter); this is torch {torch.__version__}. Upgrade it (pip "
                          "install 'easytl[onnx]' does), or export with format='torchscript'.")
    try:
        import onnx  # noqa: F401  (the metadata is written with it)
        import onnxscript  # noqa: F401  (torch.onnx's exporter needs it)
    except ImportError:
        raise ImportError("ONNX export needs the onnx extra: pip install 'easytl[onnx]'") from None
    batch, height, width = (torch.export.Dim("batch", min=1), torch.export.Dim("height", min=2),
                            torch.export.Dim("width", min=2))
    outputs = ["probabilities"]
    if predictor.novelty is not None:
        outputs = ["probabilities", "novelty"] + (["features"] if features else [])
        predictor = _BothOutputs(predictor, features).eval()
    with torch.no_grad(), stage("converting the network to ONNX", verbose):
        program = torch.onnx.export(predictor, (example,), input_names=["images"],
                                    output_names=outputs, opset_version=ONNX_OPSET,
                                    dynamic_shapes={"images": {0: batch, 1: height, 2: width}},
                                    dynamo=True, verbose=False)
        program.save(path)
    _set_onnx_metadata(path, extra)


def _write_openvino(predictor: ImagePredictor, example: torch.Tensor, folder: Path, extra: dict,
                    batches=None, verbose: int = 0) -> Path:
    """``folder``/model.xml + model.bin (the ONNX graph converted by OpenVINO; int8 by NNCF when
    ``batches`` is given) and ``easytl.json`` (the metadata, parsed)."""
    try:
        import openvino as ov
    except ImportError:
        raise ImportError("OpenVINO export needs the openvino extra: pip install "
                          "'easytl[openvino]'") from None
    if folder.exists() and not folder.is_dir():
        raise FileExistsError(f"{folder} is a file: OpenVINO export writes a folder (model.xml, "
                              "model.bin, easytl.json); give a folder path.")
    with tempfile.TemporaryDirectory() as scratch:
        onnx_path = str(Path(scratch) / "fp32.onnx")
        with_features = batches is not None and predictor.novelty is not None
        _write_onnx(predictor, example, onnx_path, extra, features=with_features, verbose=verbose)
        with stage("converting the ONNX graph to OpenVINO", verbose):
            model = ov.convert_model(onnx_path)
        if batches is not None:
            from .quantization import quantize_openvino
            fp32 = model
            with stage(f"quantizing to int8 on {_images(batches)} calibration images (NNCF)",
                       verbose):
                model = quantize_openvino(model, onnx_path, batches)
            if with_features:
                _set_int8_threshold(extra, _openvino_outputs(fp32), _openvino_outputs(model),
                                    batches, verbose)
                model = ov.Model([r for r in model.get_results()
                                  if "features" not in r.output(0).get_names()
                                  and "features" not in r.input_value(0).get_names()],
                                 model.get_parameters(), model.get_friendly_name())
        folder.mkdir(parents=True, exist_ok=True)
        ov.save_model(model, str(Path(scratch) / "model.xml"), compress_to_fp16=False)
        for name in ("model.bin", "model.xml"):  # the xml names the bin: replace it last
            with atomic_file(folder / name) as tmp:
                shutil.copyfile(Path(scratch) / name, tmp)
    with atomic_file(folder / OPENVINO_METADATA) as tmp:
        Path(tmp).write_text(json.dumps({key: json.loads(value) for key, value in extra.items()},
                                        indent=1))
    return folder
