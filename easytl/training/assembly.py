"""What ``fit`` assembles once the data is ready: the trainer, its callbacks, its fingerprint."""

from __future__ import annotations

import torch

from ..data.augment import Preprocessor
from .callbacks import LRSchedule, PhaseSetup, TrustStatistics, as_callbacks, default_callbacks
from .callbacks.ema import WeightEMA
from ..data.split import class_weights
from ..models.heads import build_head
from .mixing import BatchMixer
from ..models.network import TransferModel
from ..constants import parse_bytes
from .tasks import task_for
from .trainer import Trainer


def fingerprint(estimator, seed: int, split, phases) -> dict:
    """What a checkpoint must match to be resumed by this fit."""
    return {"seed": seed, "n_train": len(split.train_y),
            "n_val": 0 if split.val is None else len(split.val_y),
            "classes": [str(c) for c in estimator.classes_.tolist()],
            "phases": [repr(p) for p in phases],
            "params": repr(sorted((k, v) for k, v in estimator.get_params(deep=False).items()
                                  if k not in ("verbose", "callbacks", "backbone")
                                  and not callable(v)))}


def tracked_params(estimator) -> dict:
    """Parameters as trackers take them: plain values as they are, anything else as repr."""
    return {k: v if isinstance(v, (bool, int, float, str, type(None))) else repr(v)
            for k, v in estimator.get_params(deep=False).items()}


def trackers(estimator):
    """``log_with`` as accelerate takes it (None: no tracking)."""
    if estimator.log_with is None:
        return None
    from .callbacks.tracking import tracker_specs
    return tracker_specs(estimator.log_with, estimator.logging_dir)


def build_trainer(estimator, backbone, head, size, split, phases, monitor, accelerator, seed: int,
                  *, extra_callbacks=(), checkpoint_dir=None, checkpoint_fingerprint=None) -> Trainer:
    """The model (backbone + head), its preprocessing and the trainer with every callback, in
    the documented order (:func:`easytl.training.callbacks.default_callbacks`)."""
    from .callbacks.checkpoint import Checkpoint
    e = estimator
    for part in (split.train, split.val):
        if part is not None and hasattr(part, "size"):
            part.size = size
    model = TransferModel(backbone, build_head(head, backbone.num_features, len(e.classes_)))
    preprocess = Preprocessor(size, backbone.data_config["mean"], backbone.data_config["std"],
                              e.augment)
    tracking = None
    if e.log_with is not None:
        from .callbacks.tracking import Tracking
        tracking = Tracking(tracked_params(e), monitor.name)
    callbacks = default_callbacks(
        phase_setup=PhaseSetup(train_bn=e.train_bn, cache_features=e.cache_features is not False,
                               cache_views=e.cache_views,
                               cache_memory=parse_bytes(e.cache_memory, "cache_memory"),
                               cache_dir=e.cache_dir, optimizer=e.optimizer,
                               weight_decay=e.weight_decay),
        lr_schedule=LRSchedule(e.lr_decay, monitor, e.plateau_factor, e.plateau_patience),
        monitor=monitor, user=list(extra_callbacks) + as_callbacks(e.callbacks),
        grad_clip=e.grad_clip, early_stopping=e.early_stopping,
        checkpoint=(None if checkpoint_dir is None
                    else Checkpoint(checkpoint_dir, checkpoint_fingerprint)),
        tracking=tracking, trust=TrustStatistics(e.calibrate, e.unknown_rate, seed),
        ema=None if e.ema is None else WeightEMA(e.ema), verbose=e.verbose)
    mixer = (BatchMixer(len(e.classes_), e.mixup, e.cutmix) if e.mixup or e.cutmix else None)
    return Trainer(model, preprocess, accelerator, callbacks=callbacks, batch_size=e.batch_size,
                   monitor=monitor, verbose=e.verbose,
                   class_weights=class_weights(e.class_weight, e.classes_, split.train_y),
                   generator=torch.Generator().manual_seed(seed), num_workers=e.num_workers,
                   task=task_for(e.multi_label_), label_smoothing=e.label_smoothing, mixer=mixer,
                   accumulate=e.accumulate)
