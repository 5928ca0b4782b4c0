"""The learning-rate range test: train briefly while the LR grows exponentially, watch the loss.

Smith ("Cyclical Learning Rates", 2017) and fastai's ``lr_find``: the loss
falls fastest somewhere below the LR at which training blows up; a good LR is
on that steep part. easytl sweeps the first phase that trains in the fit the
estimator would run (for the default plan: fine-tuning from the linear-probe
head), so the suggestion is in the units of its ``lr`` parameter.

A suggestion is only made when the sweep shows one (:func:`analyse`): enough
steps (:data:`MIN_STEPS`), and a loss that, smoothed, falls clearly below its
level at the start: by :data:`MIN_DROP` of that level and by :data:`NOISE_Z`
times the batch noise measured there. A sweep that starts from a converged
head often shows none: its loss is near zero, and the batch noise of the first
steps alone made the old rule read a "fall" at the sweep's floor (6.5e-07 on a
texture task), an LR no one could train at. Then there is no suggestion.
"""

from __future__ import annotations

import copy
import math
import warnings
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..progress import progress
from .callbacks.base import Callback

MIN_STEPS = 20  # fewer steps cannot tell a fall from the noise of a few batches
MIN_DROP = 0.1  # the smoothed loss must fall by a tenth of its value at the start
# ... and by this many standard errors of the batch noise: on pure noise about 1 sweep in 60 shows
# a "fall" (simulated, 20 to 100 steps), and then still past the first steps, where the level falls
NOISE_Z = 4.0


class NoPhaseToSweep(ValueError):
    """The sweep's fit trained no phase (a perfect probe ended it, or too little data)."""


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
    suggestion : float or None
        Where the loss (smoothed over neighbouring steps) falls fastest per
        log-LR, within the stretch where it falls from its starting level to its
        minimum, never in the sweep's first steps; None when the loss did not fall
        meaningfully (``reason`` says why): keep the LR you have.
    min_loss_lr : float
        The LR of the lowest smoothed loss.
    diverged_at : float or None
        The LR at which the loss passed ``divergence`` × its minimum and the sweep stopped.
    phase : str
        The phase that was swept.
    loss_fell : bool
        Whether the sweep had enough steps and its smoothed loss fell by a clear
        margin after the first steps (see :func:`analyse`); True exactly when
        there is a suggestion.
    reason : str or None
        Why there is no suggestion (None when there is one).
    """

    lrs: np.ndarray
    losses: np.ndarray
    raw_losses: np.ndarray
    suggestion: float | None
    min_loss_lr: float
    diverged_at: float | None
    phase: str
    loss_fell: bool = True
    reason: str | None = None


class LRSweep(Callback):
    """Drives the LR of the first trainable phase from ``start_lr`` to ``end_lr`` (in units of
    the estimator's ``lr``, which is ``base_lr`` here) and stops when done or diverged."""

    sweeps_after_probe = True  # a few-shot probe perfect in cross-fitting does not end the sweep

    def __init__(self, base_lr: float, start_lr: float, end_lr: float, num_steps: int,
                 divergence: float, smoothing: float = 0.98, verbose: int = 0):
        self.base_lr, self.start_lr, self.end_lr = base_lr, start_lr, end_lr
        self.num_steps, self.divergence, self.smoothing = num_steps, divergence, smoothing
        self.verbose, self.bar = verbose, None
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
        # The sweep's own progress: the fit it runs in is silent (its epoch lines would show
        # the phase's scheduled LR, not the sweep's).
        self.bar = progress(total=self.steps, desc=f"LR range test ({phase.name} phase)",
                            verbose=self.verbose, unit="step",
                            enabled=t.accelerator.is_main_process)
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
        if self.bar is not None:
            self.bar.update()
            self.bar.set_postfix(lr=f"{self._lr(step):.2e}", loss=f"{smoothed:.4f}", refresh=False)
        if self.diverged_at is not None or step + 1 >= self.steps:
            self.active, self.done = False, True
            self.trainer.stop_training = True
            self._close_bar()
        else:
            self._set(step + 1)

    def on_train_end(self, logs=None) -> None:
        self._close_bar()

    def _close_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def result(self) -> LRFindResult:
        if len(self.raw) < 2:
            raise NoPhaseToSweep("the LR sweep made fewer than 2 steps: there is no phase that "
                                 "trains, or too little data; pass more images or a schedule "
                                 "with a trained phase.")
        lrs, losses = np.asarray(self.lrs), np.asarray(self.smoothed)
        suggestion, reason = analyse(lrs, np.asarray(self.raw))
        lowest = int(np.argmin(np.where(np.isfinite(losses), losses, np.inf)))
        return LRFindResult(lrs, losses, np.asarray(self.raw), suggestion,
                            float(lrs[lowest]), self.diverged_at, self.phase,
                            loss_fell=suggestion is not None, reason=reason)


def _level(values: np.ndarray, width: int) -> np.ndarray:
    """The loss level at each step: a centred running median (a blown-up batch moves it
    little), then a running mean over ``width`` steps. Centred, it does not lag the way the
    sweep's exponential average does, which shifts the steepest point to larger LRs."""
    half = width // 2
    values = np.where(np.isfinite(values), values, np.inf)  # a NaN step is no minimum
    median = np.median(sliding_window_view(np.pad(values, half, mode="edge"), width), axis=1)
    with np.errstate(invalid="ignore"):  # inf - inf next to a diverged step
        return sliding_window_view(np.pad(median, half, mode="edge"), width).mean(axis=1)


def analyse(lrs: np.ndarray, raw_losses: np.ndarray, min_steps: int = MIN_STEPS,
            min_drop: float = MIN_DROP, noise_z: float = NOISE_Z) -> tuple[float | None, str | None]:
    """The suggested LR of a sweep (per-step ``raw_losses`` at ``lrs``), or None and why not.

    The first ``head = max(5, n // 10)`` steps give the starting level (their mean)
    and are never suggested (the sweep's floor, where nothing trains yet). The
    batch noise is the spread of the first quarter's losses about their smoothed
    level (:func:`_level`, ``head`` steps wide). The smoothed loss must then fall
    below the starting level by ``min_drop`` of it and by ``noise_z`` standard
    errors of the difference of the two levels; a converged head whose loss only
    jitters near zero does not. The suggestion is the LR of the steepest descent
    per unit of log-LR between the last step still at the starting level and the
    minimum.
    """
    n = len(raw_losses)
    if n < min_steps:
        return None, (f"the sweep made only {n} steps (at least {min_steps} are needed to tell a "
                      "fall of the loss from batch noise)")
    raw = np.asarray(raw_losses, dtype=float)
    head = max(5, n // 10)
    width = head | 1  # odd: centred
    level = _level(raw, width)
    start = float(np.mean(raw[:head]))
    residuals = (raw - level)[:max(2 * head, n // 4)]
    residuals = residuals[np.isfinite(residuals)]
    noise = float(np.sqrt(np.mean(residuals ** 2) * width / (width - 1))) if len(residuals) else np.nan
    needed = max(min_drop * start, noise_z * noise * math.sqrt(1 / head + 1 / width))
    lowest = head + int(np.argmin(level[head:]))
    if not start - level[lowest] >= needed:  # also False for NaN
        return None, (f"the loss never fell meaningfully: from {start:.4g} over the first {head} steps "
                      f"(lr up to {lrs[head - 1]:.2g}), its smoothed lowest after that was "
                      f"{float(level[lowest]):.4g}, and a fall must exceed {needed:.2g} (a tenth of the "
                      f"start, and {noise_z:g} standard errors of its batch noise, {noise:.2g}): no LR in "
                      "the sweep trained clearly better than its smallest")
    still = np.flatnonzero(level[head:lowest] >= start - needed / 2)  # not fallen yet
    begin = min(head + (int(still[-1]) if len(still) else 0), lowest - 1)
    span = slice(begin, lowest + 1)
    slope = np.gradient(level[span], np.log(lrs[span]))
    return float(lrs[begin + int(np.argmin(slope))]), None


def _copies(callbacks: list) -> list:
    """Deep copies of the user's callbacks for the sweep's fit; one that cannot be copied is
    left out of the sweep (with a warning) rather than fed the sweep's hooks."""
    copies = []
    for callback in callbacks:
        try:
            # not the trainer of an earlier fit (model, optimizer, accelerator): the sweep sets its own
            trainer = getattr(callback, "trainer", None)
            copies.append(copy.deepcopy(callback, {} if trainer is None else {id(trainer): None}))
        except Exception as exc:  # e.g. it holds a lock or an open file
            warnings.warn(f"the LR range test runs without callback {callback!r}: it cannot be "
                          f"copied ({exc}), and the sweep must not call the object itself.",
                          UserWarning, stacklevel=3)
    return copies


def lr_find(estimator, X, y=None, *, start_lr: float = 1e-7, end_lr: float = 10.0,
            num_steps: int = 100, divergence: float = 4.0, **fit_params) -> LRFindResult:
    """Run the LR range test for ``estimator`` on ``X, y`` (the estimator is left untouched).

    A copy of the estimator fits with no hold-out and no calibration, the LR of
    its first trained phase growing exponentially from ``start_lr`` to
    ``end_lr`` over at most ``num_steps`` steps (fewer when that phase is
    shorter), stopping once the smoothed loss exceeds ``divergence`` × its minimum.
    The copy runs copies of the estimator's callbacks (the user's own objects see
    nothing of the sweep) and shows the sweep's progress instead of the fit's.

    When the sweep shows no LR that trains better than its start (too few steps,
    or a loss that never fell clearly, see :func:`analyse`), the result's ``suggestion`` is
    None, ``loss_fell`` is False, and a ``UserWarning`` says why: keep the LR you
    have (for the default plan, the plan's own fine-tuning LR).
    """
    from sklearn.base import clone
    if not 0 < start_lr < end_lr:
        raise ValueError(f"need 0 < start_lr < end_lr, got {start_lr} and {end_lr}.")
    if num_steps < 2:
        raise ValueError(f"num_steps must be at least 2, got {num_steps}.")
    base_lr = 1e-3
    sweep = LRSweep(base_lr, start_lr, end_lr, num_steps, divergence, verbose=estimator.verbose)
    user = estimator.callbacks
    user = [] if user is None else list(user) if isinstance(user, (list, tuple)) else [user]
    # clone() keeps the user's callback objects themselves: the sweep's fit gets copies.
    # Named apart from the linear probe, which is a phase of the fit this copy runs.
    sweep_estimator = clone(estimator).set_params(lr=base_lr, val_size=0, calibrate=False,
                                                  early_stopping=None, log_with=None, verbose=0,
                                                  callbacks=_copies(user) + [sweep])
    try:
        sweep_estimator.fit(X, y, **fit_params)
    finally:
        sweep._close_bar()
    result = sweep.result()
    if result.suggestion is None:
        warnings.warn(f"LR range test of the {result.phase} phase: no LR suggested: {result.reason}. "
                      "Keep the LR you have (lr='auto' keeps the plan's); for a sweep that can show "
                      "one, sweep a phase with more steps (more images, more epochs, "
                      "a larger num_steps) or one that starts from an untrained head.",
                      UserWarning, stacklevel=2)
    return result
