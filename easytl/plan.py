"""FitPlan: every option of a fit and every "auto" resolved once, before training starts.

``fit`` reads as: read the data -> plan -> train -> keep the results. The plan
is immutable and is the trainer's only description of what to do: the input
size, the phases with their learning rates and lengths (in optimizer updates),
the head, the validation split, the feature cache, the recipes and the trust
options. Rules that involve several options live here, and fail before any
work starts (:func:`check_options`, before the data is read) or as soon as the
data is known (:func:`make_plan`, before any training).

The same plan is the checkpoint fingerprint (:meth:`FitPlan.fingerprint`) and
is recorded in the model file (:meth:`FitPlan.describe`).

Adding a plain fit parameter touches these places: the estimator's signature
and docstring, its line in :func:`easytl.params.parameter_table`, and, when the
trainer reads it, a field of :class:`FitPlan` and its name in
:data:`TRAINER_OPTIONS` (the trainer reads ``plan.<name>``; a misspelt name fails).
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Mapping

import numpy as np

from .constants import parse_bytes
from .training import adaptive
from .training.metrics import Monitor, resolve_monitor
from .training.schedules import Phase, resolve_phases

# Options that change how a fit reports or where it keeps things, not what it computes: they
# are left out of the fingerprint, so a fit may resume with other values of them.
NOT_IN_FINGERPRINT = ("verbose", "log_with", "logging_dir", "cache_dir", "cache_memory",
                      "predict_batch_size", "num_workers", "device", "callbacks")

# The estimator parameters that are FitPlan fields of their own (what the trainer reads).
TRAINER_OPTIONS = ("batch_size", "accumulate", "augment", "class_weight", "grad_clip", "train_bn",
                   "optimizer", "weight_decay", "lr_decay", "plateau_factor", "plateau_patience",
                   "early_stopping", "label_smoothing", "mixup", "cutmix", "ema", "cache_views",
                   "cache_memory", "cache_dir", "calibrate", "unknown_rate", "num_workers",
                   "verbose", "log_with")

# The backbone LR relative to the head's and the warmup, when left to easytl ("auto"): a named
# schedule's defaults, or the adaptive plan's (LP-FT trains everything at one LR after warmup).
SCHEDULE_BACKBONE_LR_MULT, SCHEDULE_WARMUP_EPOCHS = 0.1, 0.0


def _name_of(value) -> Any:
    """A stable, JSON-able name for an option value (modules and callables by their type)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_name_of(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _name_of(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, Phase):
        return repr(value)
    if hasattr(value, "phases") and callable(value.phases):  # a Schedule
        return repr(value)
    kind = value if isinstance(value, type) else type(value)
    name = getattr(value, "__qualname__", None) or kind.__qualname__
    module = getattr(value, "__module__", None) or getattr(kind, "__module__", "")
    return f"<{module}.{name}>"


def uses_adaptive_plan(params: Mapping) -> bool:
    """The default LP-FT plan runs when both schedule and its length are left to easytl."""
    return params["schedule"] == "auto" and params["epochs"] is None


def check_options(params: Mapping, given_validation: bool = False) -> None:
    """Rules between options that need no data: fail before anything is read or decoded."""
    adaptive_plan = uses_adaptive_plan(params)
    schedule = params["schedule"]
    has_probe = adaptive_plan or (isinstance(schedule, (list, tuple))
                                  and any(p.probe for p in schedule))
    if has_probe and params["head"] not in ("auto", "linear"):
        where = ("schedule='auto' starts with a linear probe" if adaptive_plan
                 else "a probe Phase solves a linear head")
        raise ValueError(f"head={params['head']!r} cannot be used here: {where}. Use head='auto' "
                         "or 'linear', or a schedule without a probe (e.g. schedule='progressive' "
                         "or epochs=N).")
    if params["early_stopping"] is not None and params["val_size"] == 0 and not given_validation:
        raise ValueError("early_stopping needs validation data: set val_size > 0 or pass X_val.")


@dataclass(frozen=True)
class DataFacts:
    """What planning needs to know about the labelled training data."""

    classes: tuple
    counts: tuple            # images per class (multi-label: images holding the class)
    multi_label: bool
    native_side: float | None = None   # median shorter side of the images (image_size="auto")

    @property
    def per_class(self) -> int:
        return int(np.median(self.counts)) if len(self.counts) else 0


@dataclass(frozen=True)
class WeakProbeRule:
    """The fine-tuning a fit runs instead of its planned one when the linear probe's balanced
    accuracy on the held-out images is under ``below`` (:mod:`easytl.training.adaptive`)."""

    below: float
    phases: tuple                   # replace every phase after the probe
    cache_phases: tuple

    def note(self, score: float, size: int, n_val: int) -> str:
        """What the fit does instead, and why (the probe's ``history_`` row)."""
        deep = self.phases[0]
        return adaptive.weak_probe_note(score, size, deep.epochs, deep.lr, deep.trainable_groups,
                                        n_val)

    def describe(self) -> dict:
        return {"below": self.below, "phases": [phase_dict(p) for p in self.phases]}


@dataclass(frozen=True)
class FitPlan:
    """Everything a fit will do, resolved (see the module docstring).

    The estimator parameters the trainer reads are fields of their own (``plan.grad_clip``,
    ``plan.mixup``, ...: :data:`TRAINER_OPTIONS`); :attr:`options` holds all of them as given.
    """

    options: Mapping[str, Any]
    seed: int
    lr: float
    image_size: int
    pretrained_size: int
    head: Any                       # "linear", "mlp" or the user's callable
    phases: tuple                   # of Phase, no None left
    val_size: float | int
    n_train: int
    n_val: int
    classes: tuple
    multi_label: bool
    monitor: Monitor
    cache_phases: tuple             # per phase: train on cached activations of the frozen prefix
    updates_per_epoch: int          # optimizer updates of a training epoch
    backbone_name: str
    callback_names: tuple = ()
    note: str | None = None         # what the adaptive plan decided, in words
    stop_if_probe_perfect: bool = False
    if_probe_weak: WeakProbeRule | None = None   # decided after the probe, on validation data
    test_symmetries: bool = False   # after the probe, add the symmetries the data has to augment

    data_digest: str | None = None  # of the images and labels, for a fit that checkpoints
    # The estimator parameters the trainer reads, as validated (make_plan copies each one).
    batch_size: int = 32
    accumulate: int = 1
    augment: Any = "default"
    class_weight: Any = None
    grad_clip: float | None = None
    train_bn: bool = False
    optimizer: Any = "adamw"
    weight_decay: float = 1e-4
    lr_decay: str | None = "cosine"
    plateau_factor: float = 0.1
    plateau_patience: int = 1
    early_stopping: int | None = None
    label_smoothing: float = 0.0
    mixup: float | None = None
    cutmix: float | None = None
    ema: float | None = None
    cache_views: int = 2
    cache_memory: Any = "2GB"
    cache_dir: Any = None
    calibrate: bool = True
    unknown_rate: float = 0.05
    num_workers: Any = "auto"
    verbose: int = 1
    log_with: Any = None

    @property
    def cache_memory_bytes(self) -> int:
        return parse_bytes(self.cache_memory, "cache_memory")

    def fingerprint(self) -> dict:
        """What a checkpoint must match to be resumed by this fit: every resolved value and
        option that changes the result (the backbone and the callbacks' names included)."""
        options = {k: _name_of(v) for k, v in sorted(self.options.items())
                   if k not in NOT_IN_FINGERPRINT}
        return {"seed": self.seed, "lr": self.lr, "image_size": self.image_size,
                "backbone": self.backbone_name, "head": _name_of(self.head),
                "phases": [repr(p) for p in self.phases], "val_size": _name_of(self.val_size),
                "n_train": self.n_train, "n_val": self.n_val,
                "classes": [str(c) for c in self.classes], "multi_label": self.multi_label,
                "monitor": self.monitor.name, "updates_per_epoch": self.updates_per_epoch,
                "callbacks": list(self.callback_names), "options": repr(options),
                "if_probe_weak": None if self.if_probe_weak is None else repr(self.if_probe_weak),
                "test_symmetries": self.test_symmetries, "data": self.data_digest}

    def describe(self) -> dict:
        """The plan as JSON-able values (recorded in the model file)."""
        return {"seed": self.seed, "lr": self.lr, "image_size": self.image_size,
                "pretrained_size": self.pretrained_size, "backbone": self.backbone_name.split("#")[0],
                "head": _name_of(self.head), "phases": [phase_dict(p) for p in self.phases],
                "val_size": _name_of(self.val_size), "n_train": self.n_train, "n_val": self.n_val,
                "monitor": self.monitor.name, "cache_phases": list(self.cache_phases),
                "updates_per_epoch": self.updates_per_epoch, "note": self.note,
                "callbacks": list(self.callback_names),
                "if_probe_weak": None if self.if_probe_weak is None else self.if_probe_weak.describe(),
                "test_symmetries": self.test_symmetries}


def phase_dict(phase: Phase) -> dict:
    return {"name": phase.name, "epochs": phase.epochs, "trainable_groups": phase.trainable_groups,
            "lr": phase.lr, "backbone_lr_mult": phase.backbone_lr_mult,
            "warmup_epochs": phase.warmup_epochs, "probe": phase.probe,
            "layer_lr_decay": phase.layer_lr_decay}


def backbone_identity(backbone) -> str:
    """The backbone's name and a digest of its parameter names and shapes (user modules are
    all named "custom": the digest tells two architectures apart)."""
    state = getattr(backbone, "state_dict", None)
    if state is None:
        return backbone.name
    shapes = "|".join(f"{k}:{tuple(v.shape)}" for k, v in state().items())
    return f"{backbone.name}#{hashlib.sha1(shapes.encode()).hexdigest()[:12]}"


def decide_val_size(params: Mapping, facts: DataFacts, given_validation: bool):
    """The hold-out: the user's, none with X_val, or the adaptive rule's (none on few-shot data)."""
    if given_validation:
        return 0
    if params["val_size"] != "auto":
        return params["val_size"]
    if uses_adaptive_plan(params) and adaptive.is_few_shot(facts.counts):
        return 0.0
    return adaptive.VAL_FRACTION


def input_size(params: Mapping, backbone_config: dict, backbone_name: str,
               native_side: float | None) -> int:
    """The model's input size: given, the backbone's own, or chosen from the images."""
    pretrained = int(backbone_config["input_size"])
    fixed = backbone_config.get("fixed_input_size")
    if params["image_size"] == "auto":
        return pretrained if fixed or native_side is None else adaptive.auto_image_size(native_side,
                                                                                        pretrained)
    size = int(params["image_size"] or pretrained)
    if fixed and size != pretrained:
        raise ValueError(f"backbone {backbone_name!r} takes only {pretrained}x{pretrained} input; "
                         f"use image_size='auto', None or {pretrained}.")
    return size


def make_plan(params: Mapping, facts: DataFacts, *, seed: int, lr: float, backbone,
              n_train: int, n_val: int, val_size, bytes_per_value: int = 4,
              callback_names=(), data_digest: str | None = None) -> FitPlan:
    """Resolve every option against the data and the backbone (see the module docstring)."""
    params = dict(params)
    backbone_config, backbone_name = backbone.data_config, backbone_identity(backbone)
    monitor = resolve_monitor(params["monitor"])
    if facts.multi_label and params["monitor"] == "val_balanced_accuracy":
        raise ValueError("monitor='val_balanced_accuracy' is for single-label data; for "
                         "multi-label use 'val_loss', 'val_f1_macro' or a callable.")
    if params["early_stopping"] is not None and n_val == 0:
        raise ValueError("early_stopping needs validation data: set val_size > 0 or pass X_val "
                         f"(nothing is held out here: val_size={val_size!r}).")
    size = input_size(params, backbone_config, backbone.name, facts.native_side)
    pretrained = int(backbone_config["input_size"])
    effective_batch = params["batch_size"] * params["accumulate"]
    batches = math.ceil(n_train / params["batch_size"])
    updates_per_epoch = max(1, math.ceil(batches / params["accumulate"]))
    note, weak_probe, symmetries = None, None, False
    if uses_adaptive_plan(params):
        mult = 1.0 if params["backbone_lr_mult"] == "auto" else params["backbone_lr_mult"]
        warmup = adaptive.WARMUP_EPOCHS if params["warmup_epochs"] == "auto" else params["warmup_epochs"]
        groups = adaptive.fine_tune_groups(facts.per_class)
        epochs = adaptive.fine_tune_epochs(n_train, effective_batch, size, pretrained)
        fine_lr = adaptive.FINE_TUNE_LR_SCALE * lr
        phases = [Phase(1, 0, name="probe", probe=True),
                  Phase(epochs, groups, lr=fine_lr, backbone_lr_mult=mult, warmup_epochs=warmup,
                        name="all" if groups == "all" else f"top{groups}")]
        deep_epochs, deep_groups = None, "all"
        if n_val > 0 and groups != "all" and not facts.multi_label:
            deep_epochs = adaptive.fine_tune_epochs(n_train, effective_batch, size, pretrained,
                                                    length=adaptive.DEEP_LENGTH)
            deep_groups = adaptive.deep_groups(len(backbone.layer_groups))
            deep = (Phase(deep_epochs, deep_groups, lr=fine_lr, backbone_lr_mult=mult,
                          warmup_epochs=warmup, name="deep", layer_lr_decay=adaptive.LAYER_LR_DECAY),)
            # Only the stem is frozen: computing it costs a few percent of a step, while a cache
            # of its full-resolution output would take gigabytes and fix the augmented views.
            cache = ((False,) if params["cache_features"] == "auto" else
                     _cache_phases(params, deep, backbone, size, n_train + n_val, bytes_per_value))
            weak_probe = WeakProbeRule(adaptive.WEAK_PROBE_BELOW, deep, cache)
        # The symmetry test (easytl.training.symmetry) needs a label per image, and leaves a
        # recipe the user named alone; with few held-out images it scores the training images.
        symmetries = not facts.multi_label and params["augment"] == "default"
        note = adaptive.describe(size, epochs, groups, fine_lr, facts, n_val, val_size, deep_epochs,
                                 symmetries, deep_groups, params["augment"])
    else:
        mult, warmup = params["backbone_lr_mult"], params["warmup_epochs"]
        mult = SCHEDULE_BACKBONE_LR_MULT if mult == "auto" else mult
        warmup = SCHEDULE_WARMUP_EPOCHS if warmup == "auto" else warmup
        phases = resolve_phases(params["schedule"], lr, mult, warmup, params["epochs"])
    cache_phases = _cache_phases(params, phases, backbone, size, n_train + n_val, bytes_per_value)
    has_probe = any(p.probe for p in phases)
    head = params["head"]
    if head == "auto":  # a probe solves a linear head; otherwise the notebook's MLP
        head = "linear" if has_probe else "mlp"
    elif has_probe and head != "linear":
        raise ValueError(f"head={head!r} cannot be used here: the schedule has a probe phase, which "
                         "solves a linear head. Use head='auto' or 'linear'.")
    return FitPlan(options=MappingProxyType(params), seed=int(seed), lr=float(lr), image_size=size,
                   pretrained_size=pretrained, head=head, phases=tuple(phases), val_size=val_size,
                   n_train=int(n_train), n_val=int(n_val), classes=tuple(facts.classes),
                   multi_label=facts.multi_label, monitor=monitor, cache_phases=cache_phases,
                   updates_per_epoch=updates_per_epoch, backbone_name=backbone_name,
                   callback_names=tuple(callback_names), note=note,
                   stop_if_probe_perfect=note is not None and len(phases) > 1,
                   if_probe_weak=weak_probe, test_symmetries=symmetries, data_digest=data_digest,
                   **{name: params[name] for name in TRAINER_OPTIONS})


def _cache_phases(params, phases, backbone, size: int, n_images: int, bytes_per_value: int) -> tuple:
    """Per phase, whether it trains on cached activations (:func:`worth_caching`)."""
    from .training.feeds import first_trainable_stage, stage_output_bytes, worth_caching
    sizes = []  # bytes per image of each stage's output, measured once if a decision needs them

    def cached_bytes(start: int) -> int:
        if not sizes:
            sizes.extend(stage_output_bytes(backbone, size, bytes_per_value))
        return sizes[start - 1] * n_images

    decisions = []
    for phase in phases:
        start = first_trainable_stage(backbone, phase.trainable_groups)
        if start == 0 and not phase.probe:
            decisions.append(False)
            continue
        decisions.append(worth_caching(params["cache_features"], phase, params["augment"] is not None,
                                       params["cache_views"], lambda start=start: cached_bytes(start),
                                       parse_bytes(params["cache_memory"], "cache_memory")))
    return tuple(decisions)
