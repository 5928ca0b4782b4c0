"""Run any easytl export (ONNX fp32/int8, OpenVINO, TorchScript) as the classifier it came from.

:class:`Predictor` reads images exactly as ``TransferClassifier.predict`` does
(:func:`easytl.data.sources.as_image_source`: arrays, files, folders, tables),
feeds them to the exported graph as uint8 (N, H, W, 3) batches, and turns the
graph's probabilities (and novelty scores) into labels with the classes,
thresholds, label form and unknown threshold the export carries.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from ..data.labels import decode, mark_unknown
from ..trust.unknown import decide
from .export import EXPORT_VERSION, OPENVINO_METADATA

_NOT_AN_EXPORT = ("{path} is not an easytl export ({why}): write one with "
                  "easytl.export.export_model(clf, path, format=...) or `easytl export MODEL OUT`.")


class Predictor:
    """Predictions from an exported model, with the classifier's ``predict`` /
    ``predict_proba`` / ``novelty_score`` answers.

    Parameters
    ----------
    path : str or Path
        An ONNX file (fp32 or int8), a TorchScript file, or an OpenVINO export folder
        (``model.xml``, ``model.bin``, ``easytl.json``), as written by
        :func:`easytl.export.export_model`.
    batch_size : int, default=32
        Images per run of the graph.
    num_workers : "auto" or int, default="auto"
        How image files are decoded (as the classifier's ``num_workers``).

    Attributes
    ----------
    classes_ : ndarray
        The class labels, in the order of ``predict_proba``'s columns.
    multi_label_ : bool
    thresholds_ : ndarray or None
        Multi-label decision thresholds.
    unknown_threshold_ : float or None
        Novelty scores above it are "unknown" with ``reject_unknown=True`` (None: the
        export has no novelty output).
    unknown_thresholds_ : ndarray or None
        int8 single-label exports: one unknown threshold per class, applied to the images
        predicted as that class instead of ``unknown_threshold_`` (int8 rounding adds more
        noise to the novelty scores of some classes than of others).
    image_size_ : int
        The model's input size (image files are decoded at it, as in ``predict``).
    format_ : {"onnx", "torchscript", "openvino"}
    quantize_ : None or "int8"
    metadata_ : dict
        Everything the export carries beside the graph, parsed.

    Examples
    --------
    >>> from easytl import Predictor                                  # doctest: +SKIP
    >>> Predictor("model.onnx").predict("photos/", reject_unknown=True)  # doctest: +SKIP
    """

    def __init__(self, path, *, batch_size: int = 32, num_workers="auto"):
        self.path = Path(path)
        self.batch_size = int(batch_size)
        self.num_workers = num_workers
        if not self.path.exists():
            raise FileNotFoundError(f"{self.path} does not exist: give the file (or OpenVINO "
                                    "folder) that easytl export wrote.")
        if self.path.is_dir():
            self._open_openvino()
        elif zipfile.is_zipfile(self.path):
            self._open_torchscript()
        else:
            self._open_onnx()
        self._read_metadata()

    # ------------------------------------------------------------------------- opening
    def _open_onnx(self) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise ImportError("running an ONNX export needs onnxruntime: pip install "
                              "'easytl[onnx]'") from None
        try:
            session = ort.InferenceSession(str(self.path), providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own types for a file that is not ONNX
            why = "neither an ONNX nor a TorchScript file"
            if self._is_model_file():
                why = "it is an easytl model file: load it with TransferClassifier.load"
            raise ValueError(_NOT_AN_EXPORT.format(path=self.path, why=why)) from exc
        self._strings = dict(session.get_modelmeta().custom_metadata_map)
        outputs = [o.name for o in session.get_outputs()]

        def run(images, novelty):
            names = ["probabilities", "novelty"] if novelty else ["probabilities"]
            return session.run([n for n in names if n in outputs], {"images": images})
        self._run, self._outputs, self.format_ = run, outputs, "onnx"

    def _is_model_file(self) -> bool:
        """Whether the file is an easytl model file (safetensors with the easytl manifest)."""
        from ..io import _MANIFEST_KEY
        with open(self.path, "rb") as f:
            return _MANIFEST_KEY.encode() in f.read(1 << 16)

    def _open_torchscript(self) -> None:
        import warnings

        import torch
        files = {f"{key}.json": "" for key in ("classes", "multi_label", "thresholds", "easytl")}
        try:
            with warnings.catch_warnings():  # torch's notice that TorchScript is deprecated
                warnings.filterwarnings("ignore", message=r"`torch\.jit\.", category=FutureWarning)
                module = torch.jit.load(str(self.path), map_location="cpu", _extra_files=files)
        except RuntimeError as exc:
            raise ValueError(_NOT_AN_EXPORT.format(path=self.path, why="a zip file, but not "
                                                   "a TorchScript module")) from exc
        self._strings = {key.removesuffix(".json"): value for key, value in files.items() if value}
        outputs = ["probabilities"] + (["novelty"] if hasattr(module, "with_novelty") else [])

        def run(images, novelty):
            with torch.inference_mode():
                x = torch.from_numpy(images)
                if novelty and "novelty" in outputs:
                    return [t.numpy() for t in module.with_novelty(x)]
                return [module(x).numpy()]
        self._run, self._outputs, self.format_ = run, outputs, "torchscript"

    def _open_openvino(self) -> None:
        xml, side = self.path / "model.xml", self.path / OPENVINO_METADATA
        if not xml.is_file() or not side.is_file():
            raise ValueError(_NOT_AN_EXPORT.format(
                path=self.path, why=f"a folder without model.xml and {OPENVINO_METADATA}"))
        try:
            import openvino as ov
        except ImportError:
            raise ImportError("running an OpenVINO export needs openvino: pip install "
                              "'easytl[openvino]'") from None
        # OpenVINO runs float layers in bf16 by default where the CPU has it (AVX-512 bf16,
        # AMX): an fp32 export would then answer other probabilities than the model it came
        # from (measured: 8e-4 off on this machine). f32 keeps its answers the model's.
        compiled = ov.Core().compile_model(str(xml), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        self._strings = {key: json.dumps(value) for key, value in json.loads(side.read_text()).items()}
        outputs = [name for name in ("probabilities", "novelty")
                   if any(name in port.get_names() for port in compiled.outputs)]

        def run(images, novelty):
            result = compiled(images)
            names = ["probabilities", "novelty"] if novelty else ["probabilities"]
            return [result[compiled.output(n)] for n in names if n in outputs]
        self._run, self._outputs, self.format_ = run, outputs, "openvino"

    def _read_metadata(self) -> None:
        if "easytl" not in self._strings or "classes" not in self._strings:
            raise ValueError(_NOT_AN_EXPORT.format(path=self.path, why="it carries no easytl "
                                                   "metadata; exports before easytl 0.3 need "
                                                   "exporting again"))
        info = json.loads(self._strings["easytl"])
        if info.get("export_version", 0) > EXPORT_VERSION:
            raise ValueError(f"{self.path} was written by a newer easytl (export version "
                             f"{info['export_version']}): upgrade easytl to run it.")
        self.metadata_ = {key: json.loads(value) for key, value in self._strings.items()
                          if key != "producer"}
        self.classes_ = np.asarray(self.metadata_["classes"])
        self.multi_label_ = bool(self.metadata_.get("multi_label", False))
        thresholds = self.metadata_.get("thresholds")
        self.thresholds_ = None if thresholds is None else np.asarray(thresholds, dtype=np.float64)
        self.unknown_threshold_ = info.get("unknown_threshold") if "novelty" in self._outputs else None
        per_class = info.get("unknown_thresholds")
        self.unknown_thresholds_ = (None if per_class is None or self.unknown_threshold_ is None
                                    else np.asarray(per_class, dtype=np.float64))
        self.image_size_ = int(info["image_size"])
        self.quantize_ = info.get("quantize")
        self._label_form = info.get("label_form", "labels")

    def __repr__(self) -> str:
        kind = self.format_ + (f" {self.quantize_}" if self.quantize_ else "")
        return f"Predictor({str(self.path)!r}: {kind}, {len(self.classes_)} classes)"

    # ------------------------------------------------------------------------- answers
    def _outputs_of(self, X, novelty: bool) -> list[np.ndarray]:
        from ..data.sources import as_image_source, batches
        source, _ = as_image_source(X, None, size=self.image_size_)
        parts = []
        for images, _ in batches(source, None, self.batch_size, num_workers=self.num_workers):
            parts.append(self._run(images.permute(0, 2, 3, 1).contiguous().numpy(), novelty))
        return [np.concatenate([np.asarray(p[i], dtype=np.float32) for p in parts])
                for i in range(len(parts[0]))]

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities (n_images, n_classes), columns in ``classes_`` order (calibrated,
        as the classifier's ``predict_proba``)."""
        return self._outputs_of(X, novelty=False)[0]

    def novelty_score(self, X) -> np.ndarray:
        """How unlike the training images each image is (the classifier's ``novelty_score``)."""
        self._require_novelty()
        return self._outputs_of(X, novelty=True)[1]

    def predict(self, X, reject_unknown: bool = False, unknown_label="unknown"):
        """Labels as the classifier's ``predict`` gives them (same form; multi-label: every class
        whose probability reaches its threshold). ``reject_unknown=True``: images whose novelty
        score is above ``unknown_threshold_`` (int8 exports: the predicted class's entry of
        ``unknown_thresholds_``) get ``unknown_label``."""
        if not reject_unknown:
            return self._decode(self.predict_proba(X))
        self._require_novelty()
        proba, novelty = self._outputs_of(X, novelty=True)
        decision = decide(proba, novelty, self.thresholds_, multi_label=self.multi_label_,
                          unknown_threshold=self.unknown_threshold_,
                          unknown_thresholds=self.unknown_thresholds_)
        labels = decode(decision.classes, self.classes_, self._label_form)
        return mark_unknown(labels, decision.unknown, self.classes_, self.multi_label_, unknown_label)

    def _require_novelty(self) -> None:
        if self.unknown_threshold_ is None:
            raise ValueError(f"{self.path} has no novelty output (its model had no novelty "
                             "statistics): fit the model again and re-export it to use "
                             "novelty_score or reject_unknown.")

    def _decode(self, proba: np.ndarray):
        decisions = decide(proba, thresholds=self.thresholds_, multi_label=self.multi_label_).classes
        return decode(decisions, self.classes_, self._label_form)
