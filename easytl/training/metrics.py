"""What to monitor on the validation data: it picks the best epoch, stops early, cuts the LR.

``monitor`` is a name (``"val_loss"``, ``"val_accuracy"``, ``"val_balanced_accuracy"``,
``"val_f1_macro"``), a :class:`Monitor`, or a callable ``(y_true, y_pred, proba) -> float``
(a score: higher is better; wrap it in ``Monitor(fn, mode="min")`` for a loss).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np


def balanced_accuracy(y_true, y_pred, proba=None, quiet: bool = False) -> float:
    """The mean of the per-class recalls. ``quiet``: no warning for a class predicted but
    absent from ``y_true`` (a small held-out set or test set lacking a class is not news)."""
    import warnings
    from sklearn.metrics import balanced_accuracy_score
    with warnings.catch_warnings():
        if quiet:
            warnings.simplefilter("ignore", UserWarning)
        return float(balanced_accuracy_score(y_true, y_pred))


def _f1_macro(y_true, y_pred, proba) -> float:
    from sklearn.metrics import f1_score
    return float(f1_score(y_true, y_pred, average="macro", zero_division=0))


@dataclass(frozen=True)
class Monitor:
    """A validation metric to monitor.

    Parameters
    ----------
    score : callable or None
        ``score(y_true, y_pred, proba) -> float`` on the validation images
        (integer class indices, and probabilities in ``classes_`` order); None
        for the two the loop computes itself (``val_loss``, ``val_accuracy``).
    mode : "min" or "max", default="max"
        Whether lower or higher values are better.
    name : str, optional
        Its ``history_`` column; default ``"val_" + score.__name__``.
    """

    score: Callable | None = None
    mode: str = "max"
    name: str | None = None

    def __post_init__(self):
        if self.mode not in ("min", "max"):
            raise ValueError(f"Monitor mode must be 'min' or 'max', got {self.mode!r}.")
        if self.name is None:
            if self.score is None:
                raise ValueError("a Monitor without a score function needs a name.")
            object.__setattr__(self, "name", "val_" + getattr(self.score, "__name__", "score").strip("_"))

    def better(self, value: float | None, best: float | None) -> bool:
        """Strictly better than ``best`` (None: nothing yet)."""
        if value is None or not np.isfinite(value):
            return False
        if best is None:
            return True
        return value < best if self.mode == "min" else value > best

    def worst(self) -> float:
        return np.inf if self.mode == "min" else -np.inf


MONITORS = {
    "val_loss": Monitor(None, "min", "val_loss"),
    "val_accuracy": Monitor(None, "max", "val_accuracy"),
    "val_balanced_accuracy": Monitor(balanced_accuracy, "max", "val_balanced_accuracy"),
    "val_f1_macro": Monitor(_f1_macro, "max", "val_f1_macro"),
}


def resolve_monitor(monitor) -> Monitor:
    """A :class:`Monitor` from a name, a Monitor or a score callable."""
    if isinstance(monitor, Monitor):
        return monitor
    if isinstance(monitor, str):
        if monitor not in MONITORS:
            raise ValueError(f"unknown monitor {monitor!r}: use one of {', '.join(MONITORS)}, a "
                             "callable (y_true, y_pred, proba) -> score, or easytl.Monitor(fn, mode=...).")
        return MONITORS[monitor]
    if callable(monitor):
        return Monitor(monitor, "max")
    raise TypeError(f"monitor must be a name, a callable or a Monitor, not {type(monitor).__name__}.")
