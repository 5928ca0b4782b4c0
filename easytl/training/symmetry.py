"""Do turned and mirrored images keep their labels? A cheap test on the probe's features.

Top-down and texture-like images (inspection tiles, cells, fabric, aerial
views) keep their class under every symmetry of the square, so training on
turned copies teaches the network an invariance the data has; digits and
upright photos do not (a turned 6 is a 9, a turned street scene is not one
the model will be asked about), and training on turned copies teaches it
something false. Which case a data set is needs no guess: after the linear
probe, the default plan fits the same logistic regression once more on the
training features plus the features of the same images each under a random
symmetry of the square (:func:`easytl.data.augment.square_symmetries`,
labels kept), and scores both on the held-out images as they are. When the
turned copies do not make the held-out log-loss worse, the symmetries keep
this data's labels, and fine-tuning adds them to its augmentation
(``Preprocessor.turns``). The cost is one forward pass over (at most
:data:`MAX_IMAGES` of) the training images and two logistic regressions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_IMAGES = 2000   # training images the test turns (a seeded sample of larger sets)


@dataclass(frozen=True)
class SymmetryTest:
    """Held-out log-loss of the probe without and with turned training copies."""

    plain_loss: float
    turned_loss: float

    @property
    def keeps_labels(self) -> bool:
        return self.turned_loss <= self.plain_loss

    def describe(self) -> dict:
        return {"plain_val_loss": round(self.plain_loss, 4), "turned_val_loss": round(self.turned_loss, 4),
                "turns": self.keeps_labels}


def symmetry_test(features: np.ndarray, targets: np.ndarray, turned: np.ndarray,
                  turned_targets: np.ndarray, val_features: np.ndarray, val_targets: np.ndarray,
                  C: float = 1.0) -> SymmetryTest:
    """Fit the probe on ``features`` alone and with ``turned`` (the same kind of images under
    random symmetries) added; the held-out log-loss of each."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss
    labels = np.unique(np.concatenate([targets, val_targets]))

    def held_out_loss(X, y) -> float:
        model = LogisticRegression(C=C, max_iter=2000).fit(X, y)
        proba = np.zeros((len(val_features), len(labels)))
        proba[:, np.searchsorted(labels, model.classes_)] = model.predict_proba(val_features)
        proba = np.clip(proba, 1e-7, 1.0)  # a class the probe never saw: a tiny probability
        return float(log_loss(val_targets, proba / proba.sum(1, keepdims=True), labels=labels))

    return SymmetryTest(held_out_loss(features, targets),
                        held_out_loss(np.concatenate([features, turned]),
                                      np.concatenate([targets, turned_targets])))


def sample_positions(n: int, seed: int, limit: int = MAX_IMAGES) -> np.ndarray:
    """All positions, or a seeded sorted sample of ``limit`` of them."""
    if n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, limit, replace=False))
