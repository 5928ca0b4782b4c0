"""From what a fit produced to the estimator's fitted attributes (names ending in ``_``)."""

from __future__ import annotations

import warnings

import numpy as np

from .training.decisions import describe_fit


def keep_labels(estimator, prepared, table_options: dict) -> None:
    """What predicting needs to know of the labels and tables, as soon as they are read."""
    labels = prepared.labels
    estimator.classes_, estimator.multi_label_ = labels.classes, labels.multi_label
    estimator._label_form = labels.form
    estimator.skipped_images_ = list(prepared.skipped)
    estimator._table_options = table_options  # later tables are read the way this one is


def keep_results(estimator, result, plan, semi=None) -> None:
    """The fit's :class:`~easytl.training.trainer.FitResult` as fitted attributes; ``plan_``
    is the plan with what its decisions after the probe changed."""
    trust = result.trust
    temperature = trust.temperature
    estimator.temperature_ = (np.asarray(temperature, dtype=np.float64) if np.ndim(temperature)
                              else float(temperature))
    estimator.thresholds_ = (None if trust.thresholds is None
                             else np.asarray(trust.thresholds, dtype=np.float64))
    estimator.novelty_ = trust.novelty
    estimator.unknown_threshold_ = trust.unknown_threshold
    estimator.unknown_threshold_n_ = trust.unknown_threshold_n  # images the threshold rests on
    estimator.model_ = result.model.eval()
    estimator.history_ = result.history
    estimator.best_epoch_ = result.best_epoch
    estimator.interrupted_ = result.interrupted
    estimator.n_features_ = result.model.backbone.num_features
    estimator.image_size_ = plan.image_size
    estimator.phases_ = list(result.phases or plan.phases)  # what ran (a weak probe goes deeper)
    augment = estimator.augment
    given = augment if augment is None or isinstance(augment, str) else "custom"
    probe_note = estimator.history_[0].get("note") if estimator.history_ else None
    estimator.plan_ = describe_fit(plan, result.changes, estimator.phases_, result.cache_phases,
                                   probe_note, given)
    if getattr(trust, "calibration", None) is not None:  # whether a temperature was shown to help
        estimator.plan_["calibration"] = trust.calibration
    if semi is not None:  # what the unlabeled images did, in the plan and the first history row
        estimator.plan_["semi_supervised"] = semi.describe()
        if estimator.history_:
            estimator.history_[0]["semi_supervised"] = semi.note
    estimator._head_used = plan.head


def say_if_interrupted(estimator) -> None:
    """Warn when Ctrl-C ended the fit: what is kept, or that nothing is."""
    if estimator.interrupted_ and not estimator.history_:
        warnings.warn("fit was interrupted before its first epoch ended: the model is NOT "
                      "trained (its head is random) and its predictions mean nothing; save() "
                      "refuses it. Fit again.", stacklevel=3)
    elif estimator.interrupted_:
        n = len(estimator.history_)
        kept = ("the best weights so far are kept" if estimator.best_epoch_ is not None else
                "the last finished epoch's weights are kept (no held-out images to pick a best "
                "epoch by)")
        warnings.warn(f"fit was interrupted after {n} epoch{'' if n == 1 else 's'}; {kept}.",
                      stacklevel=3)
