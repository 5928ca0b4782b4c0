"""The one "unknown" rule: a novelty score, and which class (or "unknown") an image gets.

Every place that answers with labels applies it: ``TransferClassifier.predict``
(``reject_unknown=True``), :class:`easytl.Predictor` (any export, int8 included)
and ``easytl serve``. So a model answers the same in Python, from an export and
over HTTP.

* :func:`novelty_distance`: the Mahalanobis distance of pooled features to the
  nearest class mean under one shared precision matrix (of unit-length features
  when the novelty model was fitted on them; :mod:`easytl.trust.statistics`).
  Exported graphs compute the same distance in a factorised float32 form
  (:class:`easytl.deploy.export.NoveltyScore`).
* :func:`decide`: probabilities → class decisions (single-label: the most
  probable class; multi-label: every class whose probability reaches its
  threshold), and the unknown mask: a novelty score strictly above the unknown
  threshold. int8 single-label exports carry one unknown threshold per class,
  applied to the images predicted as that class.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MULTI_LABEL_THRESHOLD = 0.5  # a multi-label class is chosen at this probability without tuned thresholds


def novelty_distance(features, means, precision, normalize: bool):
    """``min_k sqrt((f - m_k)' P (f - m_k))`` for each row ``f`` of ``features``, in float64.

    Parameters
    ----------
    features : ndarray or torch.Tensor, shape (n, d)
        Pooled backbone features. A tensor gives a float64 tensor on its device.
    means : array, shape (k, d)
        The class means of the novelty model.
    precision : array, shape (d, d)
        Its shared precision matrix.
    normalize : bool
        Scale the features to unit length first (as the model's means were).

    Returns
    -------
    ndarray or torch.Tensor, shape (n,)
    """
    if isinstance(features, np.ndarray) or not hasattr(features, "double"):
        return _distance_numpy(np.asarray(features, dtype=np.float64), means, precision, normalize)
    import torch
    features = features.double()
    if normalize:
        features = features / features.norm(dim=1, keepdim=True).clamp_min(1e-12)
    means = torch.as_tensor(np.asarray(means), dtype=torch.float64, device=features.device)
    precision = torch.as_tensor(np.asarray(precision), dtype=torch.float64, device=features.device)
    projected = features @ precision
    distance = ((projected * features).sum(1, keepdim=True) - 2 * projected @ means.T
                + ((means @ precision) * means).sum(1))
    return distance.min(dim=1).values.clamp_min(0).sqrt()


def _distance_numpy(features: np.ndarray, means, precision, normalize: bool) -> np.ndarray:
    if normalize:
        features = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    means, precision = np.asarray(means, np.float64), np.asarray(precision, np.float64)
    projected = features @ precision
    distance = ((projected * features).sum(1, keepdims=True) - 2 * projected @ means.T
                + ((means @ precision) * means).sum(1))
    return np.sqrt(np.maximum(distance.min(axis=1), 0.0))


@dataclass
class Decision:
    """What :func:`decide` returns.

    ``classes``: class indices (n,) for single-label models, an int64 indicator matrix
    (n, n_classes) for multi-label ones. ``unknown``: bool (n,), or None without novelty
    scores.
    """

    classes: np.ndarray
    unknown: np.ndarray | None


def decide(probabilities, novelty=None, thresholds=None, *, multi_label: bool = False,
           unknown_threshold=None, unknown_thresholds=None) -> Decision:
    """Class decisions and the unknown mask of a batch of images.

    Parameters
    ----------
    probabilities : array, shape (n, n_classes)
        Calibrated probabilities (softmax rows, or independent sigmoids for multi-label).
    novelty : array, shape (n,), optional
        Novelty scores; without them (or without ``unknown_threshold``) ``unknown`` is None.
    thresholds : array (n_classes,) or None
        Multi-label decision thresholds (default 0.5 each); single-label models ignore them.
    multi_label : bool
    unknown_threshold : float or None
        A novelty score strictly above it is unknown.
    unknown_thresholds : array (n_classes,) or None
        Single-label only: one unknown threshold per class, applied to the images predicted
        as that class instead of ``unknown_threshold`` (int8 exports).

    Returns
    -------
    Decision
    """
    probabilities = np.asarray(probabilities)
    if multi_label:
        cut = MULTI_LABEL_THRESHOLD if thresholds is None else np.asarray(thresholds)
        classes = (probabilities >= cut).astype(np.int64)
    else:
        classes = probabilities.argmax(axis=1)
    return Decision(classes, unknown_mask(novelty, unknown_threshold, None if multi_label else classes,
                                          unknown_thresholds))


def unknown_mask(novelty, unknown_threshold, predicted=None, unknown_thresholds=None):
    """``novelty > threshold`` (bool (n,)); the threshold of each image's predicted class when
    ``unknown_thresholds`` and ``predicted`` (class indices) are given; None without scores."""
    if novelty is None or unknown_threshold is None:
        return None
    threshold = unknown_threshold
    if unknown_thresholds is not None and predicted is not None:
        threshold = np.asarray(unknown_thresholds, dtype=np.float64)[np.asarray(predicted)]
    return np.asarray(novelty) > threshold
