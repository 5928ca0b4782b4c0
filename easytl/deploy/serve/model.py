"""The fitted classifier as the server runs it: one forward pass gives probabilities and novelty.

Prepared once when the server starts (device, autocast, BatchNorm folded into
the convolutions), so a batch costs only its forward pass; ``predict`` folds
anew on each call, which is right for one big call and wasteful for many small
ones. The answers equal ``predict_proba`` / ``novelty_score`` on the same images.
"""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass

import numpy as np
import torch

from ...data.augment import Preprocessor
from ...data.images import DRAFT_MARGIN, EncodedImage, read_image_file
from ...data.sources import resize
from ...models.device import inference_setup
from ...models.folding import fold_batchnorm
from ...trust.unknown import novelty_distance


@dataclass
class Outputs:
    """What one forward pass gives for a batch: probabilities (n, classes), novelty (n,) or None."""

    proba: np.ndarray
    novelty: np.ndarray | None


class ServedModel:
    """A fitted :class:`~easytl.TransferClassifier` ready to answer batches of uint8 images."""

    def __init__(self, clf):
        self.clf = clf
        self.size = int(clf.image_size_)
        self.classes = list(clf.classes_)
        self.multi_label = bool(getattr(clf, "multi_label_", False))
        self.thresholds = getattr(clf, "thresholds_", None)
        self.temperature = getattr(clf, "temperature_", 1.0)
        self.backbone = clf.backbone if isinstance(clf.backbone, str) else type(clf.backbone).__name__
        self.novelty = getattr(clf, "novelty_", None)
        self.unknown_threshold = getattr(clf, "unknown_threshold_", None)
        self.has_novelty = self.novelty is not None and self.unknown_threshold is not None
        self.where, self._autocast = inference_setup(clf.device, clf.mixed_precision)
        config = clf.model_.backbone.data_config
        self._preprocess = Preprocessor(self.size, config["mean"], config["std"], augment=None)
        # a copy: moving the caller's network to the device, to channels-last or to eval mode
        # would change the estimator they go on using (and train with)
        model = copy.deepcopy(clf.model_).to(self.where, memory_format=torch.channels_last).eval()
        generator = torch.Generator().manual_seed(0)
        example = torch.randint(0, 256, (2, 3, self.size, self.size), dtype=torch.uint8,
                                generator=generator)
        with torch.inference_mode():
            self._model = fold_batchnorm(model, self._preprocess(example.to(self.where))).to(
                memory_format=torch.channels_last)
        self._explainer = None  # an fp32 CPU copy for Grad-CAM, made on first use
        self._explain_lock = threading.Lock()

    def decode(self, data: bytes, name: str) -> torch.Tensor:
        """An image file's bytes → uint8 (3, size, size), decoded as ``predict`` decodes files
        (reduced-size JPEG decoding, EXIF orientation); ValueError when it cannot be read."""
        image = read_image_file(EncodedImage(data, name), min_side=int(DRAFT_MARGIN * self.size))
        return resize(image[None], self.size)[0]

    @torch.inference_mode()
    def forward(self, images: torch.Tensor) -> Outputs:
        """Probabilities (and novelty scores) of a uint8 batch (n, 3, size, size)."""
        clf = self.clf
        x = self._preprocess(images.to(self.where, non_blocking=True))
        with self._autocast():
            features = self._model.features(x)
            proba = clf._task.proba(self._model.head(features), clf.temperature_).float()
            novelty = None if not self.has_novelty else novelty_distance(
                features.float(), self.novelty.means, self.novelty.precision,
                self.novelty.normalize).float()
        return Outputs(proba.cpu().numpy(),
                       None if novelty is None else novelty.cpu().numpy())

    def explain(self, image: torch.Tensor, class_index: int) -> np.ndarray:
        """The Grad-CAM overlay (uint8 (size, size, 3)) of one uint8 image (3, size, size)."""
        from ...trust.gradcam import grad_cam, overlay
        with self._explain_lock:  # hooks on one shared copy: one explanation at a time
            if self._explainer is None:
                self._explainer = copy.deepcopy(self.clf.model_).float().cpu().eval()
            x = self._preprocess(image[None]).contiguous()
            heatmap = grad_cam(self._explainer, x, np.array([class_index]))[0]
        return overlay(image.permute(1, 2, 0).numpy(), heatmap)
