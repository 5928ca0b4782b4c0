"""What the trainer fits once training is done and the best weights are back: the
temperature that calibrates probabilities, the multi-label thresholds, the novelty model
and the threshold that says what "unknown" means.

The math is in :mod:`easytl.trust.statistics`; this module runs the model over the
training and validation images and hands their outputs to it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .feeds import ImageFeed
from .tasks import tune_thresholds
from ..models.folding import fold_batchnorm
from ..trust.statistics import (NoveltyModel, choose_binary_temperatures, choose_temperature,
                                cross_fitted_scores, threshold_for)

MAX_STATISTICS_IMAGES = 5000  # training images the class means and covariance are fitted on


@dataclass
class TrustResult:
    temperature: object = 1.0          # a float, or one per class (multi-label)
    thresholds: np.ndarray | None = None
    novelty: NoveltyModel | None = None
    unknown_threshold: float | None = None
    unknown_threshold_n: int | None = None   # how many held-out scores the threshold rests on
    calibration: dict | None = None    # why the temperature is what it is (JSON-able)


def trust_statistics(trainer, calibrate: bool, unknown_rate: float, seed: int) -> TrustResult:
    """Run once the best weights are back.

    * ``calibrate``: fits the temperature on the validation split and applies it only when
      cross-fitting shows it lowers the validation log-loss
      (:func:`~easytl.trust.statistics.choose_temperature`; 1.0 otherwise, or without a
      split; one per class for a multi-label fit, whose per-class decision thresholds are
      tuned there too). The decision is ``calibration`` and goes into the last
      ``history_`` row;
    * fits the novelty model (class means, shared covariance) on the pooled features of
      (up to 5,000) training images, and sets the unknown threshold at the conformal
      ``1 - unknown_rate`` quantile of held-out scores: the cross-fitted scores of those
      training images (each scored by a model fitted without its cluster of look-alikes)
      pooled with the validation images' scores. In-sample training scores would set it far
      too low, and a few dozen validation scores alone are a noisy quantile.

    Training, validation and new images are scored alike: plain (never augmented)
    images through the final model, the features scored by ``NoveltyModel.score``.

    Every process takes part in every gather, also one that holds no validation image.
    """
    result = TrustResult()
    train_feed, val_feed = trainer.image_feeds
    # pseudo-labeled training images (semi-supervised fits) are left out: labeled ones only
    labeled = getattr(trainer, "labeled", None)
    positions = np.arange(len(train_feed)) if labeled is None else np.flatnonzero(labeled)
    if len(positions) > MAX_STATISTICS_IMAGES:
        positions = np.sort(np.random.default_rng(seed).choice(
            positions, MAX_STATISTICS_IMAGES, replace=False))
    if len(positions) < len(train_feed):
        picks = positions
        train_feed = ImageFeed(train_feed.source.subset(picks), train_feed.targets[picks],
                               train_feed.preprocess, train_feed.batch_size, train_feed.device,
                               None, train_feed.num_workers)
    features, logits, labels = _outputs(trainer, train_feed)
    n_classes = len(trainer.plan.classes)
    result.novelty = NoveltyModel.fit(features, labels, n_classes)
    multi_label = trainer.task.multi_label
    if multi_label:
        result.thresholds = np.full(n_classes, 0.5)
    result.calibration = {"temperature": 1.0, "kept": False,
                          "reason": "calibrate=False" if not calibrate else "no validation split"}
    if trainer.plan.n_val > 0:
        val_features, val_logits, val_labels = _outputs(trainer, val_feed)
        if calibrate:
            choose = choose_binary_temperatures if multi_label else choose_temperature
            result.temperature, result.calibration = choose(val_logits, val_labels, seed=seed)
        if multi_label:
            calibrated = trainer.task.proba(torch.from_numpy(val_logits), result.temperature).numpy()
            result.thresholds = tune_thresholds(calibrated, val_labels)
        held_out = [result.novelty.score(val_features)]
    else:
        held_out = []
    held_out.append(cross_fitted_scores(features, labels, n_classes, seed=seed))
    scores = np.concatenate(held_out)
    result.unknown_threshold = threshold_for(scores, unknown_rate)
    result.unknown_threshold_n = len(scores)
    if trainer.history:  # where the fitted estimator (and its model file) shows the decision
        trainer.history.record("calibration", result.calibration)
    return result


@torch.inference_mode()
def _outputs(trainer, feed):
    """Pooled features, logits and labels of every image of a feed (no augmentation), from
    every process (an empty feed contributes empty rows of the right width)."""
    model = trainer.model.eval()
    features, logits, labels, folded = [], [], [], None
    for x, y in ([] if feed is None else feed.ordered()):
        if folded is None:  # BatchNorm folded into the convolutions: nothing trains here
            folded = fold_batchnorm(model, x[:2])
        with trainer.accelerator.autocast():
            f = folded.features(x)
            z = folded.head(f)
        features.append(f.float())
        logits.append(z.float())
        labels.append(y)
    device = trainer.accelerator.device
    n_classes = len(trainer.plan.classes)
    label_shape = (0, n_classes) if trainer.task.multi_label else (0,)
    label_dtype = torch.float32 if trainer.task.multi_label else torch.long
    parts = (torch.cat(features) if features else
             torch.zeros((0, model.backbone.num_features), device=device),
             torch.cat(logits) if logits else torch.zeros((0, n_classes), device=device),
             torch.cat(labels) if labels else torch.zeros(label_shape, dtype=label_dtype, device=device))
    return tuple(trainer.gather(part).cpu().numpy() for part in parts)
