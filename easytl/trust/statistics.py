"""Can this prediction be trusted? Calibrated probabilities and a novelty score.

* **Temperature scaling** (Guo et al., "On Calibration of Modern Neural
  Networks", ICML 2017): one scalar T divides the logits; it is fitted on the
  validation split to minimise the log-loss. T > 0 never changes which class
  is most probable.
* **Novelty score**: the Mahalanobis distance of an image's pooled backbone
  features to the nearest class mean, with one covariance shared by all
  classes (Lee et al., "A Simple Unified Framework for Detecting
  Out-of-Distribution Samples and Adversarial Attacks", NeurIPS 2018),
  estimated with Ledoit-Wolf shrinkage so that a few hundred images in a
  1280-dimensional feature space still give a usable inverse. Higher means
  less like the training images.
"""

from __future__ import annotations

import numpy as np

ECE_BINS = 15


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = logits / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def log_loss(proba: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood of the true classes."""
    return float(-np.mean(np.log(np.clip(proba[np.arange(len(labels)), labels], 1e-12, 1.0))))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature in [0.25, 20] that minimises the log-loss of ``softmax(logits / T)``.

    The lower bound keeps a validation split without a single error (where the log-loss keeps
    falling as T goes to 0) from making every prediction a certainty.
    """
    from scipy.optimize import minimize_scalar
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels)

    def nll(log_t):
        return log_loss(softmax(logits, np.exp(log_t)), labels)
    result = minimize_scalar(nll, bounds=(np.log(0.25), np.log(20.0)), method="bounded",
                             options={"xatol": 1e-4})
    return float(np.exp(result.x))


def fit_binary_temperatures(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Multi-label: one temperature per class, each minimising that class's binary log-loss
    of ``sigmoid(logit / T)`` (in [0.25, 20]; 1 for a class held out all present or absent)."""
    from scipy.optimize import minimize_scalar
    logits, targets = np.asarray(logits, np.float64), np.asarray(targets) > 0.5
    temperatures = np.ones(logits.shape[1])
    for k in range(logits.shape[1]):
        if targets[:, k].all() or not targets[:, k].any():
            continue
        z, t = logits[:, k], targets[:, k]

        def bce(log_t, z=z, t=t):
            p = np.clip(1.0 / (1.0 + np.exp(-z / np.exp(log_t))), 1e-12, 1 - 1e-12)
            return -np.mean(np.where(t, np.log(p), np.log(1 - p)))
        result = minimize_scalar(bce, bounds=(np.log(0.25), np.log(20.0)), method="bounded",
                                 options={"xatol": 1e-4})
        temperatures[k] = float(np.exp(result.x))
    return temperatures


def expected_calibration_error(proba: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE: the gap between confidence and accuracy, averaged over equal-width confidence bins
    weighted by how many images fall in each."""
    confidence = proba.max(axis=1)
    correct = proba.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            ece += mask.mean() * abs(correct[mask].mean() - confidence[mask].mean())
    return float(ece)


def reliability(proba: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> dict:
    """Per confidence bin: mean confidence, accuracy and count (the reliability diagram)."""
    confidence = proba.max(axis=1)
    correct = proba.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    rows = {"edges": edges, "confidence": [], "accuracy": [], "count": []}
    for b in range(bins):
        mask = which == b
        rows["count"].append(int(mask.sum()))
        rows["confidence"].append(float(confidence[mask].mean()) if mask.any() else np.nan)
        rows["accuracy"].append(float(correct[mask].mean()) if mask.any() else np.nan)
    return rows


class NoveltyModel:
    """Class means and a shared precision matrix of pooled features; ``score`` is the
    Mahalanobis distance to the nearest class mean.

    ``means`` has one row per class with training images (in class order): a
    class that never occurs (possible in multi-label fits) has no mean, rather
    than a zero vector that would count as a near point.
    """

    def __init__(self, means: np.ndarray, precision: np.ndarray):
        self.means = np.asarray(means, dtype=np.float32)
        self.precision = np.asarray(precision, dtype=np.float32)

    @classmethod
    def fit(cls, features: np.ndarray, labels: np.ndarray, n_classes: int) -> "NoveltyModel":
        from sklearn.covariance import LedoitWolf
        features = np.asarray(features, dtype=np.float64)
        labels = np.asarray(labels)
        # Multi-label rows (n, k): a class's mean is over the images that have it, and an
        # image is centred on the average of its classes' means.
        member = labels > 0.5 if labels.ndim == 2 else np.eye(n_classes, dtype=bool)[labels]
        means = np.zeros((n_classes, features.shape[1]))
        for k in range(n_classes):
            if member[:, k].any():
                means[k] = features[member[:, k]].mean(axis=0)
        counts = member.sum(axis=1, keepdims=True)
        centre = np.where(counts > 0, (member @ means) / np.maximum(counts, 1), features.mean(axis=0))
        centred = features - centre
        precision = LedoitWolf(assume_centered=True).fit(centred).precision_
        present = member.any(axis=0)
        # Only classes seen in training have a mean; with none seen (no image has any label),
        # the mean of all the images is the one point they are like.
        means = means[present] if present.any() else features.mean(axis=0, keepdims=True)
        return cls(means, precision)

    def score(self, features: np.ndarray) -> np.ndarray:
        """min over classes k of (f - m_k)' P (f - m_k), square-rooted, for each row f."""
        features = np.asarray(features, dtype=np.float64)
        means, precision = self.means.astype(np.float64), self.precision.astype(np.float64)
        projected = features @ precision
        distance = ((projected * features).sum(1, keepdims=True) - 2 * projected @ means.T
                    + ((means @ precision) * means).sum(1))
        return np.sqrt(np.maximum(distance.min(axis=1), 0.0))


def threshold_for(scores: np.ndarray, unknown_rate: float) -> float:
    """The score above which a fraction ``unknown_rate`` of ``scores`` lies."""
    return float(np.quantile(np.asarray(scores, dtype=np.float64), 1.0 - unknown_rate))


def auroc(known_scores: np.ndarray, unknown_scores: np.ndarray) -> float:
    """How well the score separates unknown (positive, higher) from known images."""
    from sklearn.metrics import roc_auc_score
    y = np.r_[np.zeros(len(known_scores)), np.ones(len(unknown_scores))]
    return float(roc_auc_score(y, np.r_[known_scores, unknown_scores]))
