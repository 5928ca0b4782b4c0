"""TransferClassifier: the scikit-learn estimator that ties backbone, head, schedule and trainer."""

from __future__ import annotations

import copy
import os
import warnings
from dataclasses import replace

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted
from torch import nn

from .constants import DEFAULT_BACKBONE, DEFAULT_CACHE_MEMORY
from .data.labels import encode_like, read_labels
from .data.sources import as_image_source
from .data.split import Split, drop_unreadable, placeholder_size, read_labelled, stratified_split
from .data.tables import is_table, read_table
from .models.adapters import create_backbone
from .models.device import make_accelerator
from .params import validate_params
from .persistence import load_estimator, save_estimator
from .plan import DataFacts, FitPlan, phase_dict, check_options, decide_val_size, make_plan
from .prediction import PredictionMixin
from .training.adaptive import median_short_side
from .training.assembly import build_trainer, trackers
from .training.callbacks.base import as_callbacks, check_names
from .training.checkpoints import check_fingerprint, load_checkpoint
from .training.trainer import FitResult

AUTO_LR_FALLBACK = 1e-3  # lr="auto" when the range test finds no LR at which the loss falls


class TransferClassifier(PredictionMixin, ClassifierMixin, BaseEstimator):
    """Transfer learning for image classification as one scikit-learn estimator.

    Every parameter after ``backbone`` is keyword-only. The defaults adapt to
    the data: input size, schedule, its length and the validation split are
    chosen from the training images (see :mod:`easytl.training.adaptive`).

    Parameters
    ----------
    backbone : str or nn.Module, default="efficientnet_lite0"
        Registry name (:func:`easytl.list_backbones`), ``"timm:<name>"`` or a module.
    weights : "default", None or path, default="default"
        Pretrained weights, random initialisation, or a local state-dict file.
    head : "auto", "linear", "mlp" or callable, default="auto"
        "auto" is the linear head a probe solves under ``schedule="auto"``, else
        the notebook's MLP; a callable takes ``(in_features, n_classes)``.
    schedule : "auto", "feature_extraction", "fine_tune", "progressive", Schedule or list of Phase
        "auto" (with ``epochs=None``): a linear probe, then fine-tuning the top
        layer groups for a length set from the data size, or every layer but
        the stem for twice as long when the probe's balanced accuracy on the
        held-out images is under 0.85 (``history_[0]["note"]`` says which); with
        ``epochs=N`` it is "progressive".
    epochs : int, optional
        Total epochs over all phases; None lets the schedule decide.
    batch_size : int, default=32
    lr : float or "auto", default=1e-3
        Head learning rate (the adaptive plan fine-tunes at 0.3 × lr); "auto"
        runs :meth:`lr_find` first and uses its suggestion (``lr_`` tells it).
    backbone_lr_mult : float or "auto", default="auto"
        Backbone learning rate relative to the head's. "auto": 0.1 for the named
        schedules and Phase lists, 1.0 for the adaptive plan's fine-tuning (LP-FT
        trains the probe-initialised head and the backbone at one LR). A number
        is used by every schedule, the adaptive plan included.
    warmup_epochs : float or "auto", default="auto"
        Linear LR warmup at the start of each phase (stepped per optimizer update).
        "auto": none for the named schedules, half an epoch for the adaptive
        plan's fine-tuning; a number is used by every schedule.
    lr_decay : "cosine", "plateau" or None, default="cosine"
        After warmup: cosine decay over the phase (per batch); a cut by
        ``plateau_factor`` after more than ``plateau_patience`` epochs without a
        better ``monitor`` value; or a constant LR.
    grad_clip : float, optional
        Clip the gradient norm to this value (after backward, before the step).
    train_bn : bool, default=False
        Let BatchNorm layers that train use batch statistics. By default every
        BatchNorm runs in inference mode (frozen ones always do).
    image_size : "auto", int or None, default="auto"
        Model input size: chosen from the images' size ("auto"), given, or the
        backbone's pretrained size (None).
    augment : str, None, torchvision transform or callable, default="default"
        Training augmentation, never applied to validation or prediction:
        "light" is random crops, horizontal flips and brightness/contrast;
        "default" is "light", and under the adaptive plan (``schedule="auto"``)
        also vertical flips, or every turn by 90° and mirror image, when a
        test after the probe shows the held-out images have those symmetries,
        or "no_mirror" when it shows mirror images change the classes
        (:mod:`easytl.training.symmetry`; recorded in ``plan_["symmetries"]``);
        "strong" adds TrivialAugmentWide and random erasing; "flips" adds
        vertical flips; "turns" adds a random turn by 90° and mirror image (for
        inspection tiles, textures, cells, aerial views: classes that do not
        depend on orientation); "no_mirror" is "light" without its horizontal
        flip (digits, letters, left vs right); a torchvision v2
        transform is applied to each uint8 image; a callable ``f(images,
        generator)`` gets the uint8 batch (n, 3, H, W) and the fit's seeded
        generator and returns a batch (uint8 or floats in [0, 1]).
    val_size : "auto", float or int, default="auto"
        Stratified hold-out for validation, best-epoch restore and early
        stopping (a fraction, raised to one image per class on small data, or
        a count); ignored when ``X_val`` is given; 0 disables validation.
        "auto": 10%, or none under ``schedule="auto"`` with fewer than 30
        images per class.
    early_stopping : int, optional
        Patience in epochs: a phase ends after this many epochs without a
        better ``monitor`` value. The best epoch is always restored.
    monitor : str, callable or Monitor, default="val_loss"
        What picks the best epoch, stops early and drives the plateau rule:
        "val_loss", "val_accuracy", "val_balanced_accuracy", "val_f1_macro", a
        callable ``(y_true, y_pred, proba) -> score`` (higher is better) or
        ``easytl.Monitor(fn, mode="min"|"max")``. It is a ``history_`` column.
    optimizer : "adamw", "sgd" or callable, default="adamw"
        AdamW; SGD with momentum 0.9; or ``(param_groups) -> Optimizer``.
    weight_decay : float, default=1e-4
    plateau_factor : float, default=0.1
        LR multiplier of ``lr_decay="plateau"``.
    plateau_patience : int, default=1
        Epochs without improvement tolerated before the plateau cut.
    class_weight : None, "balanced" or dict
        Weights of the training loss per class.
    mixed_precision : "auto", "no", "bf16" or "fp16", default="auto"
        bf16 where the hardware runs it fast, fp16 on older GPUs, else fp32.
    device : "auto", "cpu", "cuda", "cuda:N" or "mps", default="auto"
        "auto": a CUDA GPU, else Apple's Metal GPU, else the CPU.
    num_workers : "auto" or int, default="auto"
        Parallel decoding of image files: "auto" uses threads, 0 none, N > 0 N DataLoader worker processes.
    random_state : int, optional
        Seed for splits, initialisation, shuffling and augmentation.
    verbose : int, default=1
        0 silent; 1 progress bars and a line per epoch (on stderr).
    callbacks : list of Callback or functions, optional
        Run after the built-in ones that track the best epoch, before early
        stopping, checkpoints, tracking and progress (README: Training loop).
    log_with : None, "tensorboard", "mlflow", "csv" or a list of them
        Experiment trackers (accelerate's): parameters once, every epoch's
        metrics and LR, a final report. TensorBoard and MLflow are the
        ``tracking`` extra.
    logging_dir : str or Path, optional
        Where trackers write (default ``easytl_logs``; MLflow uses its own
        tracking URI when ``MLFLOW_TRACKING_URI`` is set).
    cache_features : "auto", True or False, default="auto"
        While the lower backbone stages are frozen, compute their output once
        per image and view and train the rest on that cache (in RAM up to
        ``cache_memory``, beyond it on disk); False recomputes every epoch.
    cache_views : int, default=2
        Augmented views cached per phase when ``augment`` is on; epoch e of a
        phase trains on view (e - 1) mod cache_views. One view without augmentation.
    cache_memory : int or str, default="2GB"
        RAM budget of the feature cache, in bytes or as "500MB", "2GB".
    cache_dir : str or Path, optional
        Where a cache over budget goes (default: the system's temporary folder).
    predict_batch_size : int, default=128
        Batch size of ``predict``, ``predict_proba`` and ``transform``.
    on_bad_image : "error" or "skip", default="error"
        When ``X`` is a folder or a list of files, every file is decoded once
        before training; unreadable files raise a ValueError listing them, or
        with "skip" are left out (with a warning; see ``skipped_images_``).
    calibrate : bool, default=True
        Fit a temperature on the validation split after training (temperature
        scaling): ``predict_proba`` is calibrated, ``predict`` unchanged.
    unknown_rate : float in (0, 1), default=0.05
        The fraction of images like the training images that
        ``predict(X, reject_unknown=True)`` should call unknown: it sets
        ``unknown_threshold_``, the conformal quantile of held-out novelty
        scores (cross-fitted training scores and validation scores).
    multi_label : "auto", True or False, default="auto"
        "auto" fits a multi-label model (one sigmoid per class, binary
        cross-entropy, per-class thresholds tuned on the validation split) when
        ``y`` is a 0/1 indicator matrix or a list of label collections.
    label_smoothing : float in [0, 1), default=0.0
        Cross-entropy against targets moved ε towards uniform (multi-label: each
        0/1 target moved ε/2 towards 1/2). Training loss only.
    mixup, cutmix : float, optional
        MixUp / CutMix with λ ~ Beta(α, α) per batch (both: either, with equal
        odds), soft targets; applied to what enters the first trainable stage
        (:mod:`easytl.training.mixing`). Typical α: 0.2 (mixup), 1.0 (cutmix).
    ema : float in (0, 1), optional
        Keep an exponential moving average of the weights with this decay (e.g.
        0.999, warmed up as ``min(decay, (1 + n) / (10 + n))``); validation,
        the best epoch and the fitted model use the averaged weights.
    accumulate : int, default=1
        Gradient accumulation: one optimizer step per ``accumulate`` batches, on
        the mean of their losses (an effective batch of ``batch_size × accumulate``).

    Attributes
    ----------
    classes_ : ndarray
        Labels as given in ``fit``.
    model_ : TransferModel
        The fitted network (backbone + head).
    history_ : History (a list of dict)
        One row per epoch: epoch, phase, phase_epoch, lr, train_loss,
        train_accuracy, val_loss, val_accuracy (and the monitored metric),
        cache, seconds, best; the adaptive plan adds a ``note`` to its first row.
    best_epoch_ : int or None
        The epoch whose weights were restored (None without validation data).
    n_features_ : int
        Width of the pooled backbone features (what :meth:`transform` returns).
    image_size_ : int
        The model's input size (chosen, given, or pretrained).
    phases_ : list of Phase
        The phases that ran (the adaptive plan's, or the schedule's).
    plan_ : dict
        What the fit resolved every option to (:class:`easytl.plan.FitPlan`):
        seed, lr, input size, head, phases, hold-out, per-phase feature cache,
        optimizer updates per epoch and the plan's note; kept in the model file.
    lr_ : float
        The head learning rate used (``lr``, or the LR range test's choice for "auto").
    validation_indices_ : ndarray or None
        Positions in ``X`` of the images held out for validation (None when
        ``X_val`` was given or nothing was held out).
    skipped_images_ : list of (path, reason)
        Files left out by ``on_bad_image="skip"``.
    interrupted_ : bool
        True when Ctrl-C ended ``fit`` early (the last history row then has
        ``"interrupted": True``).
    temperature_ : float
        The logits are divided by it in ``predict_proba`` (1.0: not calibrated).
    novelty_ : NoveltyModel or None
        Class means and shared precision of the training features (:meth:`novelty_score`).
    unknown_threshold_ : float or None
        Novelty scores above it are "unknown" with ``reject_unknown=True``.
    unknown_threshold_n_ : int or None
        How many held-out novelty scores (cross-fitted training scores and
        validation scores) ``unknown_threshold_`` is the conformal quantile of.
    multi_label_ : bool
        Whether the fit was multi-label.
    thresholds_ : ndarray or None
        Multi-label: the per-class decision thresholds (tuned to maximise each
        class's F1 on the validation split; 0.5 without one).
    """

    def __init__(self, backbone=DEFAULT_BACKBONE, *, weights="default", head="auto",
                 schedule="auto", epochs=None, batch_size=32, lr=1e-3, backbone_lr_mult="auto",
                 warmup_epochs="auto", lr_decay="cosine", grad_clip=None, train_bn=False,
                 image_size="auto", augment="default", val_size="auto", early_stopping=None,
                 monitor="val_loss", optimizer="adamw", weight_decay=1e-4, plateau_factor=0.1,
                 plateau_patience=1, class_weight=None, mixed_precision="auto", device="auto",
                 num_workers="auto", random_state=None, verbose=1, callbacks=None, log_with=None,
                 logging_dir=None, cache_features="auto", cache_views=2,
                 cache_memory=DEFAULT_CACHE_MEMORY,
                 cache_dir=None, predict_batch_size=128, on_bad_image="error", calibrate=True,
                 unknown_rate=0.05, multi_label="auto", label_smoothing=0.0, mixup=None,
                 cutmix=None, ema=None, accumulate=1):
        for name, value in locals().items():
            if name not in ("self", "__class__"):
                setattr(self, name, value)

    # ------------------------------------------------------------------------- fit
    def fit(self, X, y=None, X_val=None, y_val=None, checkpoint_dir=None, resume=False, *,
            root=None, label_delim=None, path_column=None, X_unlabeled=None):
        """Fit the backbone and head on images ``X`` with labels ``y``.

        Ctrl-C during fit stops training but keeps the best weights so far
        (``interrupted_`` is then True) and returns the fitted estimator.

        Parameters
        ----------
        X : array, tensor, list of images or paths, directory, Dataset, or a table
            A table is a CSV path or a DataFrame with a column of image paths
            (relative to ``root``) and a label column (:mod:`easytl.data.tables`).
        y : labels, optional when X is a directory, a table or a Dataset of (image, label)
            One label per image, or for multi-label a 0/1 indicator matrix or a
            list of label collections; with a table, the name of its label column.
        X_val, y_val : optional held-out data (same forms); replaces ``val_size``.
        checkpoint_dir : str or Path, optional
            Write ``checkpoint.pt`` there after every epoch (weights, optimizer,
            position in the schedule, every callback's state, RNG states).
        resume : bool, default=False
            Continue from the checkpoint in ``checkpoint_dir`` (same data and
            parameters); on a CPU the result equals an uninterrupted fit. Starts
            afresh when there is no checkpoint yet.
        root, label_delim, path_column : optional
            For a table ``X``: the folder its paths are relative to (default: the
            CSV's folder), the delimiter of several labels in one cell (then the
            fit is multi-label), and the path column (default: "path", "file", ...).
        X_unlabeled : images without labels, optional (any form ``X`` takes; labels it carries are ignored)
            Semi-supervised learning (:mod:`easytl.training.semi_supervised`): the
            images the frozen backbone's features label confidently join the
            training images, if cross-validation on the labeled images shows that
            they help; otherwise the fit is the one without them.
            ``plan_["semi_supervised"]`` and ``history_[0]["semi_supervised"]`` say
            what happened. Following scikit-learn, ``-1`` in integer ``y`` or
            ``None`` in ``y`` of strings marks an image of ``X`` as unlabeled too
            (the same fit). Not for labels read from a table or folders: an empty
            label cell stays an error (or a skipped row); pass such images here.
            Unlabeled images never enter validation, calibration or the novelty statistics.

        Returns
        -------
        self
        """
        params = self.get_params(deep=False)
        validate_params(params)
        check_options(params, X_val is not None)  # rules between options, before any data is read
        user_callbacks = as_callbacks(self.callbacks)
        callback_names = check_names(user_callbacks)
        checkpoint = self._checkpoint_to_resume(checkpoint_dir, resume)
        # lr="auto": the range test runs on a copy first, before this fit holds any data
        self.lr_ = self._learning_rate(checkpoint, X, y, root, label_delim, path_column)

        # 1. read the data
        table_skips = []
        # later tables (X_val, predict, report, score) are read the way this one is
        self._table_options = {"root": root, "path_column": path_column, "label_delim": label_delim}
        # scikit-learn's -1/None for an unlabeled image applies to labels given as y, not read
        # from a table's column (an empty cell there is an error, as it always was)
        marks_unlabeled = not (is_table(X) and (y is None or isinstance(y, str)))
        if is_table(X):
            X, y, table_skips = read_table(X, y, root, path_column, label_delim, self.on_bad_image)
        X_val, y_val = self._from_table(X_val, y_val)
        source, labels = read_labelled(X, y, self.image_size)
        source, labels, kept, self.skipped_images_ = drop_unreadable(
            source, labels, self.on_bad_image, self.verbose,
            memory=self.cache_memory, directory=self.cache_dir)
        self.skipped_images_ = [(path, reason) for _, path, reason in table_skips] + self.skipped_images_
        if labels is None:
            raise ValueError("y is required: pass labels, a directory with one sub-folder per "
                             "class, a table, or a Dataset yielding (image, label).")
        source, labels, kept, unlabeled = self._unlabeled(source, labels, kept, X_unlabeled,
                                                          marks_unlabeled)
        info = read_labels(labels, self.multi_label)
        self.classes_, y_encoded = info.classes, info.encoded
        self.multi_label_, self._label_form = info.multi_label, info.form
        if len(self.classes_) < (1 if self.multi_label_ else 2):
            raise ValueError(f"y holds a single class ('{self.classes_[0]}'); a classifier needs "
                             "at least 2 classes.")

        # 2. plan
        seed = self._seed(checkpoint)
        accelerator = make_accelerator(self.device, self.mixed_precision,
                                       trackers(self.log_with, self.logging_dir), self.logging_dir)
        if accelerator.num_processes > 1:
            # Every process must split, initialise, shuffle and step alike: use the main
            # process's seed and learning rate (an LR sweep's loss differs between processes).
            from accelerate.utils import broadcast_object_list
            seed, self.lr_ = broadcast_object_list([seed, self.lr_])
            seed, self.lr_ = int(seed), float(self.lr_)
        facts = DataFacts(tuple(self.classes_.tolist()), tuple(int(c) for c in info.counts()),
                          self.multi_label_)
        val_size = decide_val_size(params, facts, X_val is not None)
        split = self._validation_split(source, y_encoded, kept, X_val, y_val, seed, val_size)
        if self.image_size == "auto":
            facts = replace(facts, native_side=median_short_side(split.train))
        devices = [accelerator.device] if accelerator.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            # A user's module is copied: fit must not change the estimator's parameters.
            spec = copy.deepcopy(self.backbone) if isinstance(self.backbone, nn.Module) else self.backbone
            backbone = create_backbone(spec, self.weights, placeholder_size(self.image_size))
            plan = make_plan(params, facts, seed=seed, lr=self.lr_, backbone=backbone,
                             n_train=len(split.train_y),
                             n_val=0 if split.val_y is None else len(split.val_y),
                             val_size=val_size, callback_names=callback_names,
                             bytes_per_value=4 if accelerator.mixed_precision == "no" else 2)
            semi, labeled = None, None
            if unlabeled is not None:
                split, semi, labeled = self._pseudo_labeled(split, unlabeled, backbone, plan,
                                                            accelerator)
                if semi.used:  # the plan's length follows the training images, pseudo-labeled too
                    plan = make_plan(params, facts, seed=seed, lr=self.lr_, backbone=backbone,
                                     n_train=len(split.train_y), n_val=plan.n_val,
                                     val_size=val_size, callback_names=callback_names,
                                     bytes_per_value=4 if accelerator.mixed_precision == "no" else 2)
            if checkpoint is not None:
                check_fingerprint(checkpoint_dir, checkpoint, plan.fingerprint())

            # 3. train
            trainer = build_trainer(plan, self, backbone, split, accelerator, user_callbacks,
                                    checkpoint_dir)
            try:
                result = trainer.fit(split.train, split.train_y, split.val, split.val_y,
                                     resume_from=checkpoint, labeled=labeled)
            except FloatingPointError:  # the trainer restored the last good weights: keep them
                self._keep(trainer.result(), plan, semi)
                raise

        # 4. keep the results
        self._keep(result, plan, semi)
        if self.interrupted_ and not self.history_:
            warnings.warn("fit was interrupted before its first epoch ended: the model is NOT "
                          "trained (its head is random) and its predictions mean nothing; save() "
                          "refuses it. Fit again.", stacklevel=2)
        elif self.interrupted_:
            warnings.warn(f"fit was interrupted after {len(self.history_)} epoch"
                          f"{'' if len(self.history_) == 1 else 's'}; the best weights so far are kept.",
                          stacklevel=2)
        return self

    def _learning_rate(self, checkpoint, X, y, root, label_delim, path_column) -> float:
        """``lr``, or for ``lr="auto"`` the LR range test's suggestion (the one a resumed fit
        already chose; the default 1e-3 when the sweep's loss never fell)."""
        if self.lr != "auto":
            return float(self.lr)
        if checkpoint is not None and "lr" in (checkpoint.get("fingerprint") or {}):
            return float(checkpoint["fingerprint"]["lr"])
        from .training.semi_supervised import labeled_part, unlabeled_mask
        mask = None if y is None or isinstance(y, str) else unlabeled_mask(y)
        if mask is not None and isinstance(X, (np.ndarray, torch.Tensor, list, tuple)):
            # the sweep runs on the labeled images, as it does when the rest come as X_unlabeled
            keep = np.flatnonzero(~mask)
            X = [X[i] for i in keep] if isinstance(X, (list, tuple)) else X[keep]
            y = labeled_part(y, mask)
        self.lr_find_ = self.lr_find(X, y, root=root, label_delim=label_delim,
                                     path_column=path_column)
        suggestion = self.lr_find_.suggestion
        return AUTO_LR_FALLBACK if suggestion is None else float(suggestion)

    def _checkpoint_to_resume(self, checkpoint_dir, resume):
        if not resume:
            return None
        if checkpoint_dir is None:
            raise ValueError("resume=True needs checkpoint_dir: the folder fit wrote checkpoints to.")
        return load_checkpoint(checkpoint_dir)

    def _seed(self, checkpoint) -> int:
        if self.random_state is not None:
            return int(self.random_state)
        if checkpoint is not None:  # an unseeded fit resumes with the seed it drew
            return int(checkpoint["fingerprint"]["seed"])
        return int(np.random.randint(0, 2**31 - 1))

    def _validation_split(self, source, y_encoded, kept, X_val, y_val, seed, val_size):
        if X_val is None:
            split = stratified_split(source, y_encoded, len(self.classes_), val_size, seed)
            self.validation_indices_ = (None if split.val_positions is None
                                        else kept[split.val_positions])
            return split
        val_source, val_labels = as_image_source(X_val, y_val, name="X_val",
                                                 size=placeholder_size(self.image_size))
        val_source, val_labels, _, bad = drop_unreadable(val_source, val_labels, self.on_bad_image,
                                                         self.verbose, "X_val",
                                                         memory=self.cache_memory,
                                                         directory=self.cache_dir)
        self.skipped_images_ += bad
        if val_labels is None:
            raise ValueError("y_val is required with X_val (unless X_val is a class folder).")
        self.validation_indices_ = None
        return Split(source, y_encoded, val_source,
                     encode_like(val_labels, self.classes_, self._label_form, "y_val"))

    def _unlabeled(self, source, labels, kept, X_unlabeled, marks_unlabeled: bool):
        """Take the images marked unlabeled in ``labels`` (-1 / None) out of ``source`` and put
        them before ``X_unlabeled``'s: (labeled source, labels, their positions in X,
        unlabeled source or None)."""
        from .data.combined import combine
        from .training.semi_supervised import labeled_part, unlabeled_mask
        parts = []
        mask = unlabeled_mask(labels) if marks_unlabeled else None
        if mask is not None:
            if mask.all():
                raise ValueError("every label in y marks an unlabeled image (-1 or None): at least "
                                 "some images need a label.")
            mark = "-1" if np.asarray(labels).dtype.kind in "iu" else "None"
            remaining = labeled_part(labels, mask)
            if len(np.unique(remaining)) < 2:
                raise ValueError(f"y holds {len(np.unique(remaining))} class besides {mask.sum()} "
                                 f"labels {mark}, which mark unlabeled images (scikit-learn's "
                                 f"semi-supervised convention). If {mark} is a class, give the "
                                 "labels as strings (y.astype(str)) or re-encode them.")
            warnings.warn(f"{mask.sum()} of {len(mask)} labels in y are {mark}: those images are "
                          "used as unlabeled images (scikit-learn's semi-supervised convention), "
                          f"not as a class. If {mark} is a class, give the labels as strings "
                          "(y.astype(str)) or re-encode them.", stacklevel=3)
            parts.append(source.subset(np.flatnonzero(mask)))
            keep = np.flatnonzero(~mask)
            source, labels, kept = source.subset(keep), remaining, kept[keep]
        if X_unlabeled is not None:
            extra, _ = as_image_source(X_unlabeled, None, name="X_unlabeled",
                                       size=placeholder_size(self.image_size))
            extra, _, _, bad = drop_unreadable(extra, None, self.on_bad_image, self.verbose,
                                               "X_unlabeled", memory=self.cache_memory,
                                               directory=self.cache_dir)
            self.skipped_images_ += bad
            extra = _without_labeled_files(extra, source)
            parts.append(extra)
        return source, labels, kept, (combine(parts) if parts else None)

    def _pseudo_labeled(self, split, unlabeled, backbone, plan, accelerator):
        """The split with pseudo-labeled images added to training when they help
        (:func:`easytl.training.semi_supervised.learn_from_unlabeled`)."""
        from .data.augment import Preprocessor
        from .training.semi_supervised import learn_from_unlabeled
        if self.multi_label_:
            raise ValueError("X_unlabeled (and -1/None in y) are for single-label data; a "
                             "multi-label fit cannot use unlabeled images.")
        for part in (split.train, unlabeled):
            if hasattr(part, "size"):
                part.size = plan.image_size
        preprocess = Preprocessor(plan.image_size, backbone.data_config["mean"],
                                  backbone.data_config["std"], augment=None)
        return learn_from_unlabeled(split, unlabeled, backbone, preprocess, self.batch_size,
                                    accelerator, len(self.classes_), plan.seed, self.num_workers)

    def _keep(self, result: FitResult, plan: FitPlan, semi=None) -> None:
        """The fit's results as fitted attributes."""
        trust = result.trust
        temperature = trust.temperature
        self.temperature_ = (np.asarray(temperature, dtype=np.float64) if np.ndim(temperature)
                             else float(temperature))
        self.thresholds_ = (None if trust.thresholds is None
                            else np.asarray(trust.thresholds, dtype=np.float64))
        self.novelty_ = trust.novelty
        self.unknown_threshold_ = trust.unknown_threshold
        self.unknown_threshold_n_ = trust.unknown_threshold_n  # trust-ux: images the threshold rests on
        self.model_ = result.model.eval()
        self.history_ = result.history
        self.best_epoch_ = result.best_epoch
        self.interrupted_ = result.interrupted
        self.n_features_ = result.model.backbone.num_features
        self.image_size_ = plan.image_size
        self.phases_ = list(result.phases or plan.phases)  # what ran (a weak probe goes deeper)
        self.plan_ = plan.describe()
        if plan.if_probe_weak is not None:
            applied = any(row.get("weak_probe") for row in self.history_)
            self.plan_["if_probe_weak"]["applied"] = applied
            if applied:  # plan_ describes the fit that ran; the planned phases are kept beside
                self.plan_["planned_phases"] = self.plan_["phases"]
                self.plan_["phases"] = [phase_dict(p) for p in self.phases_]
                self.plan_["cache_phases"] = list(result.cache_phases)
                self.plan_["note"] = self.history_[0]["note"]
        tested = next((row for row in self.history_ if "symmetries" in row), None)
        if tested is not None:  # what the symmetry test measured and added to the augmentation
            self.plan_["symmetries"] = {"tests": tested["symmetries"],
                                        "recipe": tested.get("augment")}  # or None: light
        # The recipe the model trained with, by name, for test-time augmentation: the augment
        # parameter may be set to another before predict_tta.
        given = self.augment if self.augment is None or isinstance(self.augment, str) else "custom"
        self.plan_["augment"] = (tested or {}).get("augment") or given
        if semi is not None:  # what the unlabeled images did, in the plan and the first history row
            self.plan_["semi_supervised"] = semi.describe()
            if self.history_:
                self.history_[0]["semi_supervised"] = semi.note
        self._head_used = plan.head

    def lr_find(self, X, y=None, *, start_lr: float = 1e-7, end_lr: float = 10.0,
                num_steps: int = 100, divergence: float = 4.0, **fit_params):
        """The learning-rate range test (Smith 2017; fastai's ``lr_find``) on a copy of this
        estimator: see :func:`easytl.training.lr_finder.lr_find`. This estimator is left as it is.

        Returns
        -------
        LRFindResult with ``lrs``, ``losses`` (smoothed), ``raw_losses``,
        ``suggestion`` (a value for ``lr``), ``min_loss_lr``, ``diverged_at``,
        ``phase``; :func:`easytl.plot_lr_find` draws it.
        """
        from .training.lr_finder import lr_find
        return lr_find(self, X, y, start_lr=start_lr, end_lr=end_lr, num_steps=num_steps,
                       divergence=divergence, **fit_params)

    def suggest_labels(self, X_pool, n: int = 50, *, uncertainty: str = "margin",
                       diversity: bool = True, root=None):
        """The ``n`` pool images worth labelling next (active learning), and the unknown ones.

        Uncertain images under the calibrated probabilities (``uncertainty``: "margin"
        between the two most probable classes, or "entropy"; multi-label: the class
        closest to its threshold), spread over the backbone's feature space: a
        farthest-first traversal of the ``3 n`` most uncertain distinct images
        (``diversity=False``: the ``n`` most uncertain, near-copies included). Images
        the novelty score calls unknown are left out and listed apart: they may be a
        class the model has never seen. See :mod:`easytl.trust.suggestions`.

        Parameters
        ----------
        X_pool : any form ``X`` takes (arrays, files, a folder, a table)
            Unlabelled images (a folder may be flat).
        n : int, default=50
            How many to suggest; more than the pool holds is an error.
        root : path, optional
            The folder a table's paths are relative to.

        Returns
        -------
        LabelSuggestions with ``indices`` (positions in ``X_pool``, most useful first),
        ``scores`` (uncertainty in [0, 1]), ``guesses``, ``probabilities``, ``paths``
        (for files), and ``unknown`` / ``unknown_scores`` / ``unknown_paths``.
        """
        from .trust.suggestions import suggest
        return suggest(self, X_pool, n, uncertainty, diversity, root)

    # ------------------------------------------------------------------------- persistence
    def save(self, path):
        """Write the fitted model to one file (JSON manifest + safetensors, atomically).

        The file holds no code: custom backbone modules and head callables must
        be passed again to :meth:`load`. Returns the path written.
        """
        check_is_fitted(self, "model_")
        return save_estimator(self, path)

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
        return load_estimator(cls, path, backbone, head)


def _without_labeled_files(unlabeled, labeled):
    """``unlabeled`` without the image files that are in ``labeled`` too (``--unlabeled pool/``
    over the folder a label table points into): labeled images, validation ones among them,
    must not come back as pseudo-labeled training images."""
    def files(source):
        items, positions = getattr(source, "items", None), getattr(source, "positions", None)
        if items is None or positions is None:
            return None
        return [os.path.abspath(items[p]) if isinstance(items[p], (str, os.PathLike)) else None
                for p in positions]
    mine, theirs = files(unlabeled), files(labeled)
    if not mine or not theirs:
        return unlabeled
    known = set(theirs) - {None}
    keep = [i for i, path in enumerate(mine) if path is None or path not in known]
    if len(keep) == len(mine):
        return unlabeled
    warnings.warn(f"X_unlabeled: left out {len(mine) - len(keep)} files that are labeled images "
                  "of X too", stacklevel=4)
    if not keep:
        raise ValueError("every image of X_unlabeled is a labeled image of X: give images "
                         "without labels as X_unlabeled.")
    return unlabeled.subset(keep)
