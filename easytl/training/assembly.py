"""From a FitPlan to a ready trainer: the model (backbone + head), its preprocessing, the
observers, and the trackers."""

from __future__ import annotations

import torch

from .callbacks import observers
from .tasks import class_weights
from .trainer import Trainer
from ..data.augment import Preprocessor
from ..models.heads import build_head
from ..models.network import TransferModel


def tracked_params(estimator) -> dict:
    """Parameters as trackers take them: plain values as they are, anything else as repr."""
    return {k: v if isinstance(v, (bool, int, float, str, type(None))) else repr(v)
            for k, v in estimator.get_params(deep=False).items()}


def trackers(log_with, logging_dir):
    """``log_with`` as accelerate takes it (None: no tracking)."""
    if log_with is None:
        return None
    from .callbacks.tracking import tracker_specs
    return tracker_specs(log_with, logging_dir)


def build_trainer(plan, estimator, backbone, split, accelerator, user_callbacks,
                  checkpoint_dir=None) -> Trainer:
    """The model, its preprocessing and the trainer with its observers in the documented
    order (:func:`easytl.training.callbacks.observers`)."""
    for part in (split.train, split.val):
        if part is not None and hasattr(part, "size"):
            part.size = plan.image_size
        store = getattr(part, "store", None)
        if store is not None:  # decoded images kept by fit's check: at the input size from now on
            store.settle(plan.image_size)
    model = TransferModel(backbone, build_head(plan.head, backbone.num_features, len(plan.classes)))
    preprocess = Preprocessor(plan.image_size, backbone.data_config["mean"],
                              backbone.data_config["std"], plan.augment)
    tracking = None
    if plan.log_with is not None:
        from .callbacks.tracking import Tracking
        tracking = Tracking(tracked_params(estimator), plan.monitor.name)
    callbacks = observers(user_callbacks, tracking, plan.verbose, plan.monitor.name)
    weights = class_weights(plan.class_weight, estimator.classes_, split.train_y)
    return Trainer(plan, model, preprocess, accelerator, callbacks=callbacks, class_weights=weights,
                   generator=torch.Generator().manual_seed(plan.seed), checkpoint_dir=checkpoint_dir)
