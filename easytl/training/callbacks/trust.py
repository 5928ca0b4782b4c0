"""After training: the temperature that calibrates probabilities, and what "unknown" means."""

from __future__ import annotations

import numpy as np
import torch

from ..feeds import ImageFeed
from ...models.folding import fold_batchnorm
from ..tasks import tune_thresholds
from ...trust.statistics import NoveltyModel, fit_binary_temperatures, fit_temperature, threshold_for
from .base import Callback

MAX_STATISTICS_IMAGES = 5000  # training images the class means and covariance are fitted on


class TrustStatistics(Callback):
    """Runs once the best weights are back (it follows :class:`BestWeights`).

    * ``calibrate``: fits the temperature on the validation split (1.0 without one; one per
      class for a multi-label fit, whose per-class decision thresholds are tuned there too);
    * fits the novelty model (class means, shared covariance) on the pooled features of
      (up to 5,000) training images, and sets the unknown threshold so that
      ``unknown_rate`` of the validation images (the training images without a
      validation split) would be called unknown.

    Results: ``trainer.temperature``, ``trainer.novelty``, ``trainer.unknown_threshold``.
    """

    def __init__(self, calibrate: bool = True, unknown_rate: float = 0.05, seed: int = 0):
        self.calibrate, self.unknown_rate, self.seed = calibrate, unknown_rate, seed

    def on_train_begin(self, logs=None) -> None:
        t = self.trainer
        t.temperature, t.novelty, t.unknown_threshold, t.thresholds = 1.0, None, None, None

    def on_train_end(self, logs=None) -> None:
        t = self.trainer
        if not t.history or (logs or {}).get("interrupted"):  # Ctrl-C: stop now, not in a minute
            return
        train_feed, val_feed = t.image_feeds
        if len(train_feed) > MAX_STATISTICS_IMAGES:
            picks = np.sort(np.random.default_rng(self.seed).choice(
                len(train_feed), MAX_STATISTICS_IMAGES, replace=False))
            train_feed = ImageFeed(train_feed.source.subset(picks), train_feed.targets[picks],
                                   train_feed.preprocess, train_feed.batch_size, train_feed.device,
                                   None, train_feed.num_workers)
        features, logits, labels = self._outputs(train_feed)
        t.novelty = NoveltyModel.fit(features, labels, logits.shape[1])
        multi_label = t.task.multi_label
        if multi_label:
            t.thresholds = np.full(logits.shape[1], 0.5)
        if val_feed is not None and len(val_feed):
            val_features, val_logits, val_labels = self._outputs(val_feed)
            if self.calibrate:
                t.temperature = (fit_binary_temperatures(val_logits, val_labels) if multi_label
                                 else fit_temperature(val_logits, val_labels))
            if multi_label:
                calibrated = t.task.proba(torch.from_numpy(val_logits), t.temperature).numpy()
                t.thresholds = tune_thresholds(calibrated, val_labels)
            t.unknown_threshold = threshold_for(t.novelty.score(val_features), self.unknown_rate)
        else:
            t.unknown_threshold = threshold_for(t.novelty.score(features), self.unknown_rate)

    @torch.inference_mode()
    def _outputs(self, feed):
        """Pooled features, logits and labels of every image of a feed (no augmentation)."""
        t = self.trainer
        t.model.eval()
        features, logits, labels, model = [], [], [], None
        for x, y in feed.ordered():
            if model is None:  # BatchNorm folded into the convolutions: nothing trains here
                model = fold_batchnorm(t.model, x[:2])
            with t.accelerator.autocast():
                f = model.features(x)
                z = model.head(f)
            features.append(f.float())
            logits.append(z.float())
            labels.append(y)
        return tuple(t._gather(torch.cat(part)).cpu().numpy() for part in (features, logits, labels))
