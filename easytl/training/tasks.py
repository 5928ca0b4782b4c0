"""Single-label or multi-label: the loss, the probabilities and the decisions of each.

A single-label image has exactly one class: softmax over the logits,
cross-entropy, the most probable class. A multi-label image has any subset
of the classes ("cat" and "outdoor" and "night"): one sigmoid per class,
binary cross-entropy, every class whose probability reaches its threshold.
The trainer, the callbacks and the estimator ask the task instead of assuming
one kind.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class SingleLabel:
    """One class per image; targets are class indices."""

    multi_label = False

    def loss(self, weight: torch.Tensor | None = None, label_smoothing: float = 0.0) -> nn.Module:
        """Cross-entropy; takes class indices or (mixed) class probabilities as targets."""
        return nn.CrossEntropyLoss(weight=weight, label_smoothing=label_smoothing)

    def soft(self, targets: torch.Tensor, n_classes: int) -> torch.Tensor:
        """Targets as probability rows (what MixUp / CutMix mix)."""
        return nn.functional.one_hot(targets, n_classes).float()

    def correct(self, logits: torch.Tensor, targets: torch.Tensor) -> float:
        """Summed accuracy of a batch: images whose top class is right (for mixed targets,
        the class with the larger share)."""
        if targets.dim() == 2:
            targets = targets.argmax(1)
        return float((logits.argmax(1) == targets).sum().item())

    def proba(self, logits: torch.Tensor, temperature=1.0) -> torch.Tensor:
        return torch.softmax(logits.float() / torch.as_tensor(temperature, device=logits.device,
                                                              dtype=torch.float32), dim=1)

    def decide(self, proba: np.ndarray, thresholds=None) -> np.ndarray:
        return proba.argmax(axis=1)

    def score(self, y_true: np.ndarray, y_pred: np.ndarray) -> float:
        return float(np.mean(y_true == y_pred))


def sample_f1(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Per-image F1 of two indicator matrices (1 when both are empty)."""
    y_true, y_pred = np.asarray(y_true, bool), np.asarray(y_pred, bool)
    both = (y_true & y_pred).sum(1)
    total = y_true.sum(1) + y_pred.sum(1)
    return np.where(total == 0, 1.0, 2.0 * both / np.maximum(total, 1))


class MultiLabel:
    """Any subset of the classes per image; targets are 0/1 indicator rows.

    The "accuracy" columns of ``history_`` hold the sample-averaged F1 at
    threshold 0.5 for a multi-label fit.
    """

    multi_label = True

    def loss(self, weight: torch.Tensor | None = None, label_smoothing: float = 0.0) -> nn.Module:
        """Binary cross-entropy per class; smoothing moves each 0/1 target ε/2 towards 1/2."""
        return SmoothedBCE(weight, label_smoothing)

    def soft(self, targets: torch.Tensor, n_classes: int) -> torch.Tensor:
        return targets.float()

    def correct(self, logits: torch.Tensor, targets: torch.Tensor) -> float:
        predicted = (logits > 0).cpu().numpy()  # sigmoid(z) >= 0.5
        return float(sample_f1(targets.cpu().numpy() > 0.5, predicted).sum())

    def proba(self, logits: torch.Tensor, temperature=1.0) -> torch.Tensor:
        return torch.sigmoid(logits.float() / torch.as_tensor(temperature, device=logits.device,
                                                              dtype=torch.float32))

    def decide(self, proba: np.ndarray, thresholds=None) -> np.ndarray:
        thresholds = 0.5 if thresholds is None else np.asarray(thresholds)
        return (proba >= thresholds).astype(np.int64)

    def score(self, y_true: np.ndarray, y_pred: np.ndarray) -> float:
        return float(sample_f1(y_true, y_pred).mean())


class SmoothedBCE(nn.Module):
    """``BCEWithLogitsLoss(pos_weight)`` on targets ``y (1 - ε) + ε / 2`` (label smoothing
    for independent yes/no decisions: the two-class case of cross-entropy's rule)."""

    def __init__(self, pos_weight: torch.Tensor | None = None, label_smoothing: float = 0.0):
        super().__init__()
        self.bce = nn.BCEWithLogitsLoss(pos_weight=pos_weight)
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        eps = self.label_smoothing
        return self.bce(logits, targets * (1 - eps) + eps / 2 if eps else targets)


def task_for(multi_label: bool):
    return MultiLabel() if multi_label else SingleLabel()


def tune_thresholds(proba: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Per class, the threshold that maximises that class's F1 on held-out probabilities
    (candidates: the probabilities themselves; 0.5 for a class with no positive example)."""
    from sklearn.metrics import f1_score
    thresholds = np.full(proba.shape[1], 0.5)
    for k in range(proba.shape[1]):
        truth = targets[:, k] > 0.5
        if not truth.any() or truth.all():
            continue
        candidates = np.unique(np.r_[proba[:, k], 0.5])
        scores = [f1_score(truth, proba[:, k] >= t, zero_division=0) for t in candidates]
        best = max(scores)
        thresholds[k] = widest_margin(proba[:, k], candidates[np.isclose(scores, best)])
    return thresholds


def widest_margin(values: np.ndarray, tied: np.ndarray) -> float:
    """Among equally good thresholds, the middle of the widest gap they decide alike.

    ``values >= t`` gives the same decisions for every t in (the largest value
    below t, t]; the midpoint of the widest such interval is the threshold
    least tied to these exact images (a max-margin choice). Taking a tied
    candidate itself would put the threshold on a validation image, e.g. at
    exactly 1.0 when every positive's probability saturates there.
    """
    best_width, best_mid = -1.0, 0.5
    for t in tied:
        below = values[values < t]
        low = float(below.max()) if below.size else 0.0
        if t - low > best_width:
            best_width, best_mid = t - low, (low + t) / 2.0
    return float(best_mid)


def class_weights(class_weight, classes: np.ndarray, y_encoded: np.ndarray) -> torch.Tensor | None:
    """Per-class loss weights for ``class_weight`` (None, "balanced" or {label: weight}); for
    multi-label ``y`` (an indicator matrix) the weights of each class's positive examples
    (BCE's ``pos_weight``), "balanced" being negatives / positives."""
    if class_weight is None:
        return None
    if class_weight != "balanced":
        unknown = set(class_weight) - set(classes.tolist())
        if unknown:
            raise ValueError(f"class_weight names labels not in y: {sorted(map(str, unknown))}.")
        weights = [float(class_weight.get(c, 1.0)) for c in classes.tolist()]
    elif y_encoded.ndim == 2:
        positives = np.maximum(y_encoded.sum(axis=0), 1)
        weights = (len(y_encoded) - positives) / positives
    else:
        from sklearn.utils.class_weight import compute_class_weight
        weights = compute_class_weight("balanced", classes=np.arange(len(classes)), y=y_encoded)
    return torch.tensor(weights, dtype=torch.float32)
