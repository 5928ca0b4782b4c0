"""The learning-rate range test: train briefly while the LR grows exponentially, watch the loss.

Smith ("Cyclical Learning Rates", 2017) and fastai's ``lr_find``: the loss
falls fastest somewhere below the LR at which training blows up; a good LR is
on that steep part. easytl sweeps the first phase that trains in the fit the
estimator would run (for the default plan: fine-tuning from the linear-probe
head), so the suggestion is in the units of its ``lr`` parameter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .callbacks.base import Callback


@dataclass
class LRFindResult:
    """What :func:`lr_find` measured.

    Attributes
    ----------
    lrs : ndarray
        The ``lr`` value of each step (the phase's own groups run at their
        multiples of it, as in ``fit``).
    losses : ndarray
        Training loss per step, smoothed (exponential average, bias-corrected).
    raw_losses : ndarray
        Training loss per step as measured.
    suggestion : float
        Where the smoothed loss falls fastest (per log-LR), before its minimum.
    min_loss_lr : float
        The LR of the lowest smoothed loss.
    diverged_at : float or None
        The LR at which the loss passed ``divergence`` × its minimum and the sweep stopped.
    phase : str
        The phase that was swept.
    """

    lrs: np.ndarray
    losses: np.ndarray
    raw_losses: np.ndarray
    suggestion: float
    min_loss_lr: float
    diverged_at: float | None
    phase: str


class LRSweep(Callback):
    """Drives the LR of the first trainable phase from ``start_lr`` to ``end_lr`` (in units of
    the estimator's ``lr``, which is ``base_lr`` here) and stops when done or diverged."""

    def __init__(self, base_lr: float, start_lr: float, end_lr: float, num_steps: int,
                 divergence: float, smoothing: float = 0.98):
        self.base_lr, self.start_lr, self.end_lr = base_lr, start_lr, end_lr
        self.num_steps, self.divergence, self.smoothing = num_steps, divergence, smoothing
        self.lrs, self.raw, self.smoothed = [], [], []
        self.active, self.done, self.steps, self.phase, self.diverged_at = False, False, 0, None, None
        self._average = 0.0

    def on_phase_begin(self, phase, logs=None) -> None:
        t = self.trainer
        self.active = t.optimizer is not None and not self.done
        if not self.active:
            return
        self.phase = phase.name
        available = phase.epochs * t.batches_per_epoch
        self.steps = max(2, min(self.num_steps, available))
        self._set(0)

    def _lr(self, step: int) -> float:
        return self.start_lr * (self.end_lr / self.start_lr) ** (step / (self.steps - 1))

    def _set(self, step: int) -> None:
        factor = self._lr(step) / self.base_lr
        for group in self.trainer.optimizer.param_groups:
            group["lr"] = group["initial_lr"] * factor

    def on_batch_end(self, batch, logs=None) -> None:
        if not self.active:
            return
        step = len(self.raw)
        loss = float(logs["loss"])
        self._average = self.smoothing * self._average + (1 - self.smoothing) * loss
        smoothed = self._average / (1 - self.smoothing ** (step + 1))
        self.lrs.append(self._lr(step))
        self.raw.append(loss)
        self.smoothed.append(smoothed)
        if not math.isfinite(loss) or smoothed > self.divergence * min(self.smoothed):
            self.diverged_at = self._lr(step)
        if self.diverged_at is not None or step + 1 >= self.steps:
            self.active, self.done = False, True
            self.trainer.stop_training = True
        else:
            self._set(step + 1)

    def result(self) -> LRFindResult:
        if len(self.raw) < 2:
            raise ValueError("the LR sweep made fewer than 2 steps: there is no phase that trains, "
                             "or too little data; pass more images or a schedule with a trained phase.")
        lrs, losses = np.asarray(self.lrs), np.asarray(self.smoothed)
        return LRFindResult(lrs, losses, np.asarray(self.raw), suggest(lrs, losses),
                            float(lrs[int(np.argmin(losses))]), self.diverged_at, self.phase)


def suggest(lrs: np.ndarray, losses: np.ndarray) -> float:
    """The LR where the smoothed loss falls fastest per unit of log-LR, before its minimum
    (when the loss only rises, the start of the sweep: nothing larger was shown to help)."""
    lowest = int(np.argmin(losses))
    if lowest < 2:
        return float(lrs[0])
    slope = np.gradient(losses[:lowest + 1], np.log(lrs[:lowest + 1]))
    return float(lrs[int(np.argmin(slope))])


def lr_find(estimator, X, y=None, *, start_lr: float = 1e-7, end_lr: float = 10.0,
            num_steps: int = 100, divergence: float = 4.0, **fit_params) -> LRFindResult:
    """Run the LR range test for ``estimator`` on ``X, y`` (the estimator is left untouched).

    A copy of the estimator fits with no hold-out and no calibration, the LR of
    its first trained phase growing exponentially from ``start_lr`` to
    ``end_lr`` over at most ``num_steps`` steps (fewer when that phase is
    shorter), stopping once the smoothed loss exceeds ``divergence`` × its minimum.
    """
    from sklearn.base import clone
    if not 0 < start_lr < end_lr:
        raise ValueError(f"need 0 < start_lr < end_lr, got {start_lr} and {end_lr}.")
    if num_steps < 2:
        raise ValueError(f"num_steps must be at least 2, got {num_steps}.")
    base_lr = 1e-3
    sweep = LRSweep(base_lr, start_lr, end_lr, num_steps, divergence)
    user = estimator.callbacks
    user = [] if user is None else list(user) if isinstance(user, (list, tuple)) else [user]
    probe = clone(estimator).set_params(lr=base_lr, val_size=0, calibrate=False, early_stopping=None,
                                        log_with=None, callbacks=user + [sweep])
    probe.fit(X, y, **fit_params)
    return sweep.result()
