"""TransferClassifier: the scikit-learn estimator that ties backbone, head, schedule and trainer."""

from __future__ import annotations

import copy
import json
import numbers
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.model_selection import train_test_split
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.validation import check_is_fitted

from . import __version__
from .backbones import Backbone, create_backbone
from .data import (ListImages, Preprocessor, UnreadableImagesError, as_image_source,
                   describe_unreadable, find_unreadable)
from .heads import build_head, head_from_spec, head_spec, resolve_head
from .checkpoints import check_fingerprint, load_checkpoint
from .inference import run_model
from .io import ModelFileError, check_writable, load_model_file, save_model_file
from .adaptive import VAL_FRACTION, Plan, PlanNote, auto_image_size, median_short_side
from .adaptive import plan as adaptive_plan
from .schedules import resolve_phases
from .training import Trainer, TransferModel, as_callbacks, make_accelerator


class TransferClassifier(ClassifierMixin, BaseEstimator):
    """Transfer learning for image classification as one scikit-learn estimator.

    Parameters
    ----------
    backbone : str or nn.Module, default="efficientnet_lite0"
        Registry name (:func:`easytl.list_backbones`), ``"timm:<name>"`` or a module.
    weights : "default", None or path, default="default"
        Pretrained weights, random initialisation, or a local state-dict file.
    head : "linear", "mlp" or callable, default="mlp"
        Classification head; a callable takes ``(in_features, n_classes)``.
    schedule : str, Schedule or list of Phase, default="progressive"
        ``"feature_extraction"``, ``"fine_tune"``, ``"progressive"`` or your own.
    epochs : int, optional
        Total epochs over all phases; None uses the schedule's own lengths.
    batch_size : int, default=32
    lr : float, default=1e-3
        Head learning rate.
    backbone_lr_mult : float, default=0.1
        Backbone learning rate relative to the head's.
    warmup_epochs : float, default=0
        Linear LR warmup at the start of each phase (stepped per batch).
    lr_decay : "cosine", "plateau" or None, default="cosine"
        After warmup: cosine decay over the phase (per batch), ReduceLROnPlateau
        on the validation loss (per epoch, ×0.1), or a constant LR.
    grad_clip : float, optional
        Clip the gradient norm to this value.
    train_bn : bool, default=False
        Let BatchNorm layers that train use batch statistics. By default every
        BatchNorm runs in inference mode (frozen ones always do).
    image_size : int, optional
        Model input size; None uses the backbone's pretrained size.
    augment : "default", None or callable, default="default"
        Training augmentation (never applied to validation or prediction).
    val_size : float or int, default=0.1
        Stratified hold-out for validation, best-epoch restore and early
        stopping (a fraction, raised to one image per class on small data, or
        a count); ignored when ``X_val`` is given; 0 disables validation.
    early_stopping : int, optional
        Patience in epochs: a phase ends after this many epochs without a
        better validation loss. The best epoch is always restored.
    class_weight : None, "balanced" or dict
    mixed_precision : "auto", "no", "bf16" or "fp16", default="auto"
    device : "auto", "cpu" or "cuda", default="auto"
    num_workers : int, default=0
        DataLoader workers (decode image files in parallel).
    random_state : int, optional
        Seed for splits, initialisation, shuffling and augmentation.
    verbose : int, default=1
        0 silent; 1 a progress bar and a line per epoch (on stderr).
    callbacks : list of Callback or functions, optional
    cache_features : "auto" or False, default="auto"
        While the lower backbone stages are frozen, compute their output once
        per image and view and train the rest on that cache ("auto": always, in
        RAM up to ``cache_memory``, beyond it on disk; False: recompute every epoch).
    cache_views : int, default=2
        Augmented views cached per phase when ``augment`` is on; epoch e of a
        phase trains on view (e - 1) mod cache_views. One view without augmentation.
    cache_memory : int or str, default="2GB"
        RAM budget of the feature cache, in bytes or as "500MB", "2GB"; a larger
        cache is written to a temporary file in ``cache_dir`` and read back
        batch by batch (``history_`` rows say ``"cache": "ram"`` or ``"disk"``).
    cache_dir : str or Path, optional
        Where a cache over budget goes (default: the system's temporary folder).
    predict_batch_size : int, default=128
        Batch size of ``predict``, ``predict_proba`` and ``transform``.
    on_bad_image : "error" or "skip", default="error"
        When ``X`` is a folder or a list of files, every file is decoded once
        before training; unreadable, truncated, empty or non-image files raise
        a ValueError listing them, or with "skip" are left out (with a warning;
        see ``skipped_images_``).

    Attributes
    ----------
    classes_ : ndarray
        Labels as given in ``fit``.
    model_ : TransferModel
        The fitted network (backbone + head).
    history_ : list of dict
        One row per epoch: epoch, phase, lr, train_loss, train_accuracy,
        val_loss, val_accuracy, seconds, best.
    best_epoch_ : int or None
        The epoch whose weights were restored.
    n_features_ : int
    validation_indices_ : ndarray or None
        Positions in ``X`` of the images held out for validation (None when
        ``X_val`` was given or ``val_size=0``).
    skipped_images_ : list of (path, reason)
        Files left out by ``on_bad_image="skip"``.
    interrupted_ : bool
        True when Ctrl-C ended ``fit`` early (the last history row then has
        ``"interrupted": True``).
        Width of the pooled backbone features (what :meth:`transform` returns).
    """

    def __init__(self, backbone="efficientnet_lite0", weights="default", head="auto",
                 schedule="auto", epochs=None, batch_size=32, lr=1e-3,
                 backbone_lr_mult=0.1, warmup_epochs=0, lr_decay="cosine", grad_clip=None,
                 train_bn=False, image_size="auto", augment="default", val_size="auto",
                 early_stopping=None, class_weight=None, mixed_precision="auto", device="auto",
                 num_workers=0, random_state=None, verbose=1, callbacks=None,
                 cache_features="auto", cache_views=2, cache_memory="2GB", cache_dir=None,
                 predict_batch_size=128, on_bad_image="error"):
        self.backbone = backbone
        self.weights = weights
        self.head = head
        self.schedule = schedule
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.backbone_lr_mult = backbone_lr_mult
        self.warmup_epochs = warmup_epochs
        self.lr_decay = lr_decay
        self.grad_clip = grad_clip
        self.train_bn = train_bn
        self.image_size = image_size
        self.augment = augment
        self.val_size = val_size
        self.early_stopping = early_stopping
        self.class_weight = class_weight
        self.mixed_precision = mixed_precision
        self.device = device
        self.num_workers = num_workers
        self.random_state = random_state
        self.verbose = verbose
        self.callbacks = callbacks
        self.cache_features = cache_features
        self.cache_views = cache_views
        self.cache_memory = cache_memory
        self.cache_dir = cache_dir
        self.predict_batch_size = predict_batch_size
        self.on_bad_image = on_bad_image

    # ------------------------------------------------------------------------- validation
    def _validate_params(self) -> None:
        def positive_int(name, allow_none=False):
            value = getattr(self, name)
            if allow_none and value is None:
                return
            if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer{' or None' if allow_none else ''}, "
                                 f"got {value!r}.")

        def non_negative(name, allow_none=False):
            value = getattr(self, name)
            if allow_none and value is None:
                return
            if not isinstance(value, numbers.Real) or isinstance(value, bool) or not value >= 0:
                raise ValueError(f"{name} must be a number >= 0, got {value!r}.")

        positive_int("batch_size")
        positive_int("epochs", allow_none=True)
        if self.image_size != "auto":
            positive_int("image_size", allow_none=True)
        positive_int("early_stopping", allow_none=True)
        positive_int("cache_views")
        positive_int("predict_batch_size")
        _parse_bytes(self.cache_memory, "cache_memory")
        if self.on_bad_image not in ("error", "skip"):
            raise ValueError(f"on_bad_image must be 'error' or 'skip', got {self.on_bad_image!r}.")
        if self.cache_features not in ("auto", True, False):
            raise ValueError(f"cache_features must be 'auto', True or False, got {self.cache_features!r}.")
        non_negative("lr")
        non_negative("backbone_lr_mult")
        non_negative("warmup_epochs")
        non_negative("grad_clip", allow_none=True)
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}.")
        if not (isinstance(self.num_workers, numbers.Integral) and self.num_workers >= 0):
            raise ValueError(f"num_workers must be an integer >= 0, got {self.num_workers!r}.")
        if self.lr_decay not in ("cosine", "plateau", None):
            raise ValueError(f"lr_decay must be 'cosine', 'plateau' or None, got {self.lr_decay!r}.")
        if not (self.augment in ("default", None) or callable(self.augment)):
            raise ValueError(f"augment must be 'default', None or a callable, got {self.augment!r}.")
        if not (self.class_weight in (None, "balanced") or isinstance(self.class_weight, dict)):
            raise ValueError("class_weight must be None, 'balanced' or a dict {label: weight}, "
                             f"got {self.class_weight!r}.")
        if self.val_size != "auto" and (not isinstance(self.val_size, numbers.Real)
                                        or isinstance(self.val_size, bool) or self.val_size < 0):
            raise ValueError(f"val_size must be 'auto', a fraction in [0, 1) or a count, "
                             f"got {self.val_size!r}.")
        if self.random_state is not None and not isinstance(self.random_state, numbers.Integral):
            raise ValueError(f"random_state must be an int or None, got {self.random_state!r}.")
        if self.head != "auto":
            resolve_head(self.head)

    def _class_weights(self, y_encoded: np.ndarray) -> torch.Tensor | None:
        if self.class_weight is None:
            return None
        if self.class_weight == "balanced":
            weights = compute_class_weight("balanced", classes=np.arange(len(self.classes_)),
                                           y=y_encoded)
        else:
            unknown = set(self.class_weight) - set(self.classes_.tolist())
            if unknown:
                raise ValueError(f"class_weight names labels not in y: {sorted(map(str, unknown))}.")
            weights = [float(self.class_weight.get(c, 1.0)) for c in self.classes_.tolist()]
        return torch.tensor(weights, dtype=torch.float32)

    def _encode(self, labels: np.ndarray, where: str) -> np.ndarray:
        index = {c: i for i, c in enumerate(self.classes_.tolist())}
        unseen = sorted({str(v) for v in labels.tolist() if v not in index})
        if unseen:
            raise ValueError(f"{where} has labels never seen in fit: {unseen[:10]}; "
                             f"known classes: {self.classes_.tolist()[:20]}.")
        return np.array([index[v] for v in labels.tolist()], dtype=np.int64)

    def _drop_bad_files(self, source, labels, name: str = "X"):
        """Decode every image file once before training; raise on bad ones, or leave them out.

        Returns the source, its labels and the positions in ``X`` that were kept.
        """
        kept = np.arange(len(source))
        if not (isinstance(source, ListImages) and all(isinstance(p, Path) for p in source.items)):
            return source, labels, kept
        bad = find_unreadable(source.items, verbose=self.verbose)
        if not bad:
            return source, labels, kept
        if self.on_bad_image == "error" or len(bad) == len(source):
            raise UnreadableImagesError(
                f"{len(bad)} of {len(source)} image files in {name} cannot be read:\n"
                f"{describe_unreadable(bad)}\nRemove or re-save them, or pass "
                "on_bad_image='skip' to leave them out.", bad)
        bad_paths = {path for path, _ in bad}
        kept = np.array([i for i, p in enumerate(source.items) if p not in bad_paths])
        warnings.warn(f"left out {len(bad)} unreadable image files:\n"
                      f"{describe_unreadable(bad)}", stacklevel=3)
        self.skipped_images_ += bad
        return source.subset(kept), (None if labels is None else labels[kept]), kept

    def _split(self, source, y_encoded, seed, val_size):
        n = len(y_encoded)
        if val_size == 0:
            return source, y_encoded, None, None, None
        n_classes = len(self.classes_)
        n_val = val_size if val_size >= 1 else int(np.ceil(val_size * n))
        if val_size < 1:
            # A stratified hold-out needs one image per class: small data sets get that minimum.
            n_val = max(n_val, n_classes)
        counts = np.bincount(y_encoded, minlength=n_classes)
        if n_val < n_classes or n - n_val < n_classes or counts.min() < 2:
            raise ValueError(
                f"val_size={val_size} cannot hold out a stratified validation set from {n} "
                f"images in {n_classes} classes (smallest class: {counts.min()} images): every "
                "class needs an image on both sides. Use more images, val_size=0, or pass X_val/y_val.")
        train_idx, val_idx = train_test_split(np.arange(n), test_size=int(n_val), stratify=y_encoded,
                                              random_state=seed)
        return (source.subset(train_idx), y_encoded[train_idx],
                source.subset(val_idx), y_encoded[val_idx], val_idx)

    # ------------------------------------------------------------------------- fit
    def fit(self, X, y=None, X_val=None, y_val=None, checkpoint_dir=None, resume=False):
        """Fit the backbone and head on images ``X`` with labels ``y``.

        Ctrl-C during fit stops training but keeps the best weights so far
        (``interrupted_`` is then True) and returns the fitted estimator.

        Parameters
        ----------
        X : array, tensor, list of images or paths, directory, or Dataset
        y : array-like of labels, optional when X is a directory or a Dataset of (image, label)
        X_val, y_val : optional held-out data (same forms); replaces ``val_size``.
        checkpoint_dir : str or Path, optional
            Write ``checkpoint.pt`` there after every epoch (weights, optimizer,
            scheduler, position in the schedule, RNG states).
        resume : bool, default=False
            Continue from the checkpoint in ``checkpoint_dir`` (same data and
            parameters); on a CPU the result equals an uninterrupted fit. Starts
            afresh when there is no checkpoint yet.

        Returns
        -------
        self
        """
        self._validate_params()
        if isinstance(X, (str, os.PathLike)) and Path(X).is_file():
            raise ValueError(f"X is a single file ({X}); fit needs many labelled images: a folder with "
                             "one sub-folder per class, a list of image paths with y, or an array.")
        source, labels = as_image_source(X, y, size=_placeholder_size(self.image_size))
        self.skipped_images_ = []
        source, labels, kept = self._drop_bad_files(source, labels)
        if labels is None:
            raise ValueError("y is required: pass labels, a directory with one sub-folder per "
                             "class, or a Dataset yielding (image, label).")
        self.classes_, y_encoded = np.unique(labels, return_inverse=True)
        y_encoded = y_encoded.astype(np.int64)
        if len(self.classes_) < 2:
            raise ValueError(f"y holds a single class ('{self.classes_[0]}'); a classifier needs "
                             "at least 2 classes.")
        checkpoint = None
        if resume:
            if checkpoint_dir is None:
                raise ValueError("resume=True needs checkpoint_dir: the folder fit wrote checkpoints to.")
            checkpoint = load_checkpoint(checkpoint_dir)
        if self.random_state is not None:
            seed = int(self.random_state)
        elif checkpoint is not None:  # an unseeded fit resumes with the seed it drew
            seed = int(checkpoint["fingerprint"]["seed"])
        else:
            seed = int(np.random.randint(0, 2**31 - 1))
        accelerator = make_accelerator(self.device, self.mixed_precision)
        if accelerator.num_processes > 1 and self.random_state is None:
            # Every process must split, initialise and shuffle alike: use the main process's seed.
            from accelerate.utils import broadcast_object_list
            seed = int(broadcast_object_list([seed])[0])
        plan = self._plan(np.bincount(y_encoded, minlength=len(self.classes_)))
        if X_val is not None:
            val_source, val_labels = as_image_source(X_val, y_val, name="X_val",
                                                     size=_placeholder_size(self.image_size))
            val_source, val_labels, _ = self._drop_bad_files(val_source, val_labels, "X_val")
            if val_labels is None:
                raise ValueError("y_val is required with X_val (unless X_val is a class folder).")
            train, train_y = source, y_encoded
            val, val_y = val_source, self._encode(val_labels, "y_val")
            self.validation_indices_ = None
        else:
            train, train_y, val, val_y, val_idx = self._split(source, y_encoded, seed,
                                                              self._val_fraction(plan))
            self.validation_indices_ = None if val_idx is None else kept[val_idx]
        if self.early_stopping is not None and val is None:
            raise ValueError("early_stopping needs validation data: set val_size > 0 or pass X_val.")

        phases = resolve_phases(plan.phases if plan else self.schedule, self.lr,
                                self.backbone_lr_mult, self.warmup_epochs, self.epochs)
        native_side = median_short_side(train) if self.image_size == "auto" else None
        class_weights = self._class_weights(train_y)
        fingerprint = {"seed": seed, "n_train": len(train_y), "n_val": 0 if val is None else len(val_y),
                       "classes": [str(c) for c in self.classes_.tolist()],
                       "phases": [repr(p) for p in phases],
                       "params": repr(sorted((k, v) for k, v in self.get_params(deep=False).items()
                                             if k not in ("verbose", "callbacks", "backbone")
                                             and not callable(v)))}
        if checkpoint is not None:
            check_fingerprint(checkpoint_dir, checkpoint, fingerprint)
        callbacks = as_callbacks(self.callbacks)
        if plan is not None:
            callbacks = [PlanNote(plan, stop_if_perfect=len(phases) > 1)] + callbacks
        devices = [accelerator.device] if accelerator.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            # A user's module is copied: fit must not change the estimator's parameters.
            spec = copy.deepcopy(self.backbone) if isinstance(self.backbone, nn.Module) else self.backbone
            backbone = create_backbone(spec, self.weights, _placeholder_size(self.image_size))
            size = self._input_size(backbone, native_side)
            for part in (train, val):
                if part is not None and hasattr(part, "size"):
                    part.size = size
            self._head_used = self._head(plan)
            head = build_head(self._head_used, backbone.num_features, len(self.classes_))
            model = TransferModel(backbone, head)
            preprocess = Preprocessor(size, backbone.data_config["mean"],
                                      backbone.data_config["std"], self.augment)
            generator = torch.Generator().manual_seed(seed)
            trainer = Trainer(model, preprocess, accelerator, batch_size=self.batch_size,
                              grad_clip=self.grad_clip, train_bn=self.train_bn,
                              lr_decay=self.lr_decay, early_stopping=self.early_stopping,
                              class_weights=class_weights, callbacks=callbacks,
                              verbose=self.verbose, generator=generator,
                              num_workers=self.num_workers,
                              cache_features=self.cache_features is not False,
                              cache_views=self.cache_views,
                              cache_memory=_parse_bytes(self.cache_memory, "cache_memory"),
                              cache_dir=self.cache_dir)
            try:
                trainer.fit(phases, train, train_y, val, val_y, checkpoint_dir=checkpoint_dir,
                            resume_from=checkpoint, fingerprint=fingerprint)
            except FloatingPointError:  # the trainer restored the last good weights: keep them
                self._set_fitted(trainer, size, phases)
                raise
        self._set_fitted(trainer, size, phases)
        if self.interrupted_ and not self.history_:
            warnings.warn("fit was interrupted before its first epoch ended: the model is NOT "
                          "trained (its head is random) and its predictions mean nothing; save() "
                          "refuses it. Fit again.", stacklevel=2)
        elif self.interrupted_:
            warnings.warn(f"fit was interrupted after {len(self.history_)} epochs; the best weights "
                          "so far are kept (interrupted_ is True).", stacklevel=2)
        return self

    def _set_fitted(self, trainer: Trainer, size: int, phases) -> None:
        self.model_ = trainer.model.eval()
        self.history_ = trainer.history
        self.best_epoch_ = trainer.best_epoch
        self.interrupted_ = trainer.interrupted
        self.n_features_ = trainer.model.backbone.num_features
        self.image_size_ = size
        self.phases_ = phases

    def _input_size(self, backbone: Backbone, native_side: float | None) -> int:
        """The model's input size: given, the backbone's own, or chosen from the images."""
        pretrained = int(backbone.data_config["input_size"])
        fixed = backbone.data_config.get("fixed_input_size")
        if self.image_size == "auto":
            return pretrained if fixed else auto_image_size(native_side, pretrained)
        size = int(self.image_size or pretrained)
        if fixed and size != pretrained:
            raise ValueError(f"backbone {backbone.name!r} takes only {pretrained}x{pretrained} input; "
                             f"use image_size='auto', None or {pretrained}.")
        return size

    def _plan(self, counts) -> Plan | None:
        """The adaptive plan when schedule and length are both left to easytl, else None."""
        if self.schedule == "auto" and self.epochs is None:
            return adaptive_plan(counts, self.batch_size, self.lr)
        return None

    def _val_fraction(self, plan: Plan | None) -> float:
        if self.val_size != "auto":
            return self.val_size
        return plan.val_size if plan is not None else VAL_FRACTION

    def _head(self, plan: Plan | None):
        """``head="auto"``: the linear head a probe solves under the adaptive plan, else the
        notebook's MLP head."""
        if self.head != "auto":
            return self.head
        return "linear" if plan is not None else "mlp"

    # ------------------------------------------------------------------------- inference
    def _run(self, X, output, desc: str = "predicting", **kwargs) -> np.ndarray:
        check_is_fitted(self, "model_")
        return run_model(self.model_, X, output, image_size=self.image_size_,
                         data_config=self.model_.backbone.data_config,
                         batch_size=self.predict_batch_size, num_workers=self.num_workers,
                         device=self.device, mixed_precision=self.mixed_precision,
                         verbose=self.verbose, desc=desc, **kwargs)

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, shape (n_images, n_classes), columns in ``classes_`` order."""
        return self._run(X, lambda model, x: torch.softmax(model(x).float(), dim=1))

    def predict_tta(self, X, n_augment: int = 5, return_proba: bool = False) -> np.ndarray:
        """Predict with test-time augmentation: average probabilities over views.

        The views are the plain image, its mirror image, then ``n_augment - 2``
        mild random views (large crops, flips, ±5% brightness/contrast), drawn
        from ``random_state`` so repeated calls agree. ``n_augment=1`` is
        :meth:`predict`.

        Returns
        -------
        labels (n_images,), or probabilities (n_images, n_classes) with ``return_proba``.
        """
        if not isinstance(n_augment, numbers.Integral) or n_augment < 1:
            raise ValueError(f"n_augment must be a positive integer, got {n_augment!r}.")
        generator = torch.Generator().manual_seed(self.random_state or 0)
        proba = self._run(X, lambda model, x: torch.softmax(model(x).float(), dim=1),
                          n_views=int(n_augment), generator=generator,
                          desc=f"predicting ({n_augment} TTA views)")
        return proba if return_proba else self.classes_[proba.argmax(axis=1)]

    def report(self, X, y=None, n_augment: int = 1) -> dict:
        """Held-out evaluation: accuracy, sklearn's classification report and the confusion matrix.

        ``n_augment > 1`` evaluates :meth:`predict_tta` instead of :meth:`predict`.

        Returns
        -------
        dict with ``accuracy`` (float), ``report`` (text), ``confusion_matrix``
        (rows: true labels, columns: predictions, both in ``labels`` order) and ``labels``.
        """
        from sklearn.metrics import accuracy_score, classification_report, confusion_matrix
        y = self._labels_for(X, y)
        predictions = self.predict(X) if n_augment == 1 else self.predict_tta(X, n_augment)
        labels = self.classes_
        return {"accuracy": float(accuracy_score(y, predictions)),
                "report": classification_report(y, predictions, labels=labels, zero_division=0,
                                                target_names=[str(c) for c in labels], digits=3),
                "confusion_matrix": confusion_matrix(y, predictions, labels=labels),
                "labels": labels.tolist()}

    def predict(self, X) -> np.ndarray:
        """Predicted labels, in the label values given to ``fit``."""
        proba = self.predict_proba(X)  # checks that the estimator is fitted
        return self.classes_[proba.argmax(axis=1)]

    def transform(self, X) -> np.ndarray:
        """Pooled backbone features, shape (n_images, n_features_), float32."""
        return self._run(X, lambda model, x: model.features(x), desc="extracting features")

    def score(self, X, y=None, sample_weight=None) -> float:
        """Accuracy on ``X`` (labels from ``y``, or from class folders / a labelled Dataset)."""
        from sklearn.metrics import accuracy_score
        y = self._labels_for(X, y)
        return float(accuracy_score(y, self.predict(X), sample_weight=sample_weight))

    def _labels_for(self, X, y) -> np.ndarray:
        """``y``, or the labels a class folder / labelled Dataset carries; all seen in fit."""
        check_is_fitted(self, "model_")
        if y is None:
            _, y = as_image_source(X, None, size=self.image_size_)
            if y is None:
                raise ValueError("labels needed: pass y, or a class folder / labelled Dataset.")
        y = np.asarray(y)
        self._encode(y, "y")
        return y

    # ------------------------------------------------------------------------- persistence
    def save(self, path) -> Path:
        """Write the fitted model to one file (JSON manifest + safetensors, atomically).

        The file holds no code: custom backbone modules and head callables must
        be passed again to :meth:`load`.
        """
        check_is_fitted(self, "model_")
        if getattr(self, "interrupted_", False) and not self.history_:
            raise ValueError("this model was interrupted before its first epoch ended: it is not "
                             "trained, so it is not saved. Fit it again.")
        check_writable(path)
        backbone_name = self.model_.backbone.name
        params = {}
        for key, value in self.get_params(deep=False).items():
            try:
                json.dumps(value)
                params[key] = value
            except TypeError:
                params[key] = None if key in ("callbacks", "augment") else "<not stored>"
        manifest = {
            "easytl_version": __version__,
            "backbone": backbone_name,
            "weights": self.weights if isinstance(self.weights, (str, type(None))) else str(self.weights),
            "head": head_spec(getattr(self, "_head_used", self.head)),
            "classes": self.classes_.tolist(),
            "classes_dtype": self.classes_.dtype.str,
            "data_config": self.model_.backbone.data_config,
            "image_size": self.image_size_,
            "n_features": self.n_features_,
            "best_epoch": self.best_epoch_,
            "interrupted": bool(getattr(self, "interrupted_", False)),
            "history": self.history_,
            "params": params,
        }
        return _save_on_main_process(path, manifest, self.model_.state_dict())

    @classmethod
    def load(cls, path, backbone=None, head=None) -> "TransferClassifier":
        """Rebuild a fitted classifier from :meth:`save`'s file; no download, no unpickling.

        Parameters
        ----------
        path : str or Path
        backbone : nn.Module, optional
            Needed only when the model was fitted on a custom module (same architecture).
        head : callable, optional
            Needed only when the model was fitted with a custom head callable.
        """
        manifest, tensors = load_model_file(path)
        try:
            name = manifest["backbone"]
            classes = np.asarray(manifest["classes"], dtype=np.dtype(manifest["classes_dtype"]))
            if name == "custom" and backbone is None:
                raise ModelFileError(f"{path} was fitted on a custom backbone module: pass the same "
                                     "architecture as load(path, backbone=module).")
            head_factory = head if head is not None else (
                head_from_spec(manifest["head"]) if manifest["head"] else None)
            if head_factory is None:
                raise ModelFileError(f"{path} was fitted with a custom head: pass the same callable "
                                     "as load(path, head=callable).")
            net = create_backbone(backbone if name == "custom" else name, weights=None,
                                  image_size=manifest["image_size"])
            net.data_config = dict(manifest["data_config"])
            model = TransferModel(net, build_head(head_factory, manifest["n_features"], len(classes)))
            model.load_state_dict(tensors, strict=True)
        except (KeyError, TypeError, RuntimeError) as exc:
            raise ModelFileError(f"{path} does not match the model it describes: "
                                 f"{type(exc).__name__}: {exc}") from None
        params = {k: v for k, v in manifest["params"].items()
                  if k in cls._get_param_names() and v != "<not stored>"}
        params["backbone"] = backbone if name == "custom" else name
        if head is not None:
            params["head"] = head
        clf = cls(**params)
        clf.model_ = model.eval()
        clf.classes_ = classes
        clf.history_ = manifest["history"]
        clf.best_epoch_ = manifest["best_epoch"]
        clf.interrupted_ = bool(manifest.get("interrupted", False))
        clf.n_features_ = manifest["n_features"]
        clf.image_size_ = manifest["image_size"]
        clf._head_used = head_factory
        return clf


def _save_on_main_process(path, manifest: dict, tensors: dict) -> Path:
    """Write the model file once: in a distributed run only process 0 writes, and the others
    wait until the file is complete."""
    import torch.distributed as dist
    distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
    if not distributed or dist.get_rank() == 0:
        path = save_model_file(path, manifest, tensors)
    if distributed:
        dist.barrier()
    return Path(path)


def _placeholder_size(image_size) -> int:
    """A size for reading ``X`` before the real one is chosen (it is set once it is)."""
    return image_size if isinstance(image_size, int) and not isinstance(image_size, bool) else 224


_UNITS = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}


def _parse_bytes(value, name: str) -> int:
    """A byte count from an int or a string such as "500MB" or "2GB" (binary units)."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 0:
        return int(value)
    if isinstance(value, str):
        text = value.strip().upper().replace("IB", "B")
        for unit in sorted(_UNITS, key=len, reverse=True):
            if text.endswith(unit):
                try:
                    number = float(text[: -len(unit)])
                except ValueError:
                    break
                if number >= 0:
                    return int(number * _UNITS[unit])
                break
    raise ValueError(f"{name} must be a number of bytes or a size such as '500MB' or '2GB', "
                     f"got {value!r}.")
