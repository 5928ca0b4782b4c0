"""TransferClassifier: the scikit-learn estimator that ties backbone, head, schedule and trainer.

``fit`` reads as: prepare the data (:mod:`easytl.data.fit_data`) -> plan
(:mod:`easytl.plan`) -> train (:mod:`easytl.training.trainer`) -> keep the results.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import replace

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted
from torch import nn

from .constants import DEFAULT_BACKBONE, DEFAULT_CACHE_MEMORY
from .data.fit_data import ReadOptions, prepare
from .data.labels import decode
from .data.split import placeholder_size
from .models.adapters import create_backbone
from .models.device import make_accelerator
from .params import validate_params
from .persistence import load_estimator, save_estimator
from .plan import DataFacts, FitPlan, check_options, decide_val_size, make_plan
from .prediction import PredictionMixin
from .training.adaptive import median_short_side
from .training.assembly import build_trainer, trackers
from .training.callbacks.base import as_callbacks, check_names
from .fitted import keep_labels, keep_results, say_if_interrupted
from .training.checkpoints import check_fingerprint, checkpoint_to_resume
from .training.lr_finder import NoPhaseToSweep
from .training.semi_supervised import with_unlabeled

AUTO_LR_FALLBACK = 1e-3  # lr="auto" when the range test finds no LR at which the loss falls


def _same_on_every_process(accelerator, value, kind):
    """Every process must split, initialise, shuffle and step alike: the main process's value
    (its seed; its LR, as an LR sweep's loss differs between processes)."""
    if accelerator.num_processes == 1:
        return value
    from accelerate.utils import broadcast_object_list
    return kind(broadcast_object_list([value])[0])


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
    unlabeled_label : int, str or None, default=None
        A label of ``y`` that marks an image as unlabeled (e.g. -1, scikit-learn's
        semi-supervised convention): those images are used as ``X_unlabeled``
        is. None: every label is a class, ``-1`` included.

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
        Positions in ``X`` as given (a table's rows, a list's items) of the images
        held out for validation (None when ``X_val`` was given or nothing was held out).
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
                 cache_memory=DEFAULT_CACHE_MEMORY, cache_dir=None, predict_batch_size=128,
                 on_bad_image="error", calibrate=True, unknown_rate=0.05, multi_label="auto",
                 label_smoothing=0.0, mixup=None, cutmix=None, ema=None, accumulate=1,
                 unlabeled_label=None):
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
            Continue from the checkpoint in ``checkpoint_dir`` (the same images,
            labels and parameters: a digest of them is checked); on a CPU the
            result equals an uninterrupted fit. Starts afresh when there is no
            checkpoint yet.
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
            what happened. Images of ``X`` whose label is ``unlabeled_label`` (say
            -1) join them. Images that are labelled images of ``X`` or ``X_val``
            too (the same file or the same pixels) are left out, with a warning.
            Unlabeled images never enter validation, calibration or the novelty statistics.

        Returns
        -------
        self
        """
        params = self.get_params(deep=False)
        validate_params(params)
        check_options(params, X_val is not None)  # rules between options, before any data is read
        user_callbacks = as_callbacks(self.callbacks)
        checkpoint = checkpoint_to_resume(checkpoint_dir, resume)

        # 1. the data: read, checked, labelled, de-duplicated (easytl.data.fit_data)
        options = self._read_options(root, path_column, label_delim)
        prepared = prepare(X, y, X_val, y_val, X_unlabeled, options=options)
        keep_labels(self, prepared, options.table_options)
        accelerator = make_accelerator(self.device, self.mixed_precision,
                                       trackers(self.log_with, self.logging_dir), self.logging_dir)
        seed = _same_on_every_process(accelerator, self._seed(checkpoint), int)
        facts = DataFacts(tuple(self.classes_.tolist()),
                          tuple(int(c) for c in prepared.labels.counts()), self.multi_label_)
        val_size = decide_val_size(params, facts, prepared.val is not None)
        data = prepared.split(val_size, seed)
        self.validation_indices_ = data.validation_indices
        # lr="auto": the range test on the training images, the validation images held out
        self.lr_ = _same_on_every_process(accelerator, self._learning_rate(checkpoint, data), float)
        if self.image_size == "auto":
            facts = replace(facts, native_side=median_short_side(data.train))

        devices = [accelerator.device] if accelerator.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            # 2. the plan
            backbone = self._new_backbone()
            digest = None if checkpoint_dir is None else data.digest()  # the data as given
            plan = self._plan(params, facts, data, backbone, seed, val_size, accelerator,
                              check_names(user_callbacks), digest)
            prepared.check_input_size(plan.image_size)  # images far below it: named
            data, semi, labeled = with_unlabeled(data, backbone, plan, accelerator,
                                                 len(self.classes_))
            if semi is not None and semi.used:  # the plan's length follows the pseudo-labeled images too
                plan = self._plan(params, facts, data, backbone, seed, val_size, accelerator,
                                  check_names(user_callbacks), digest)
            if checkpoint is not None:
                check_fingerprint(checkpoint_dir, checkpoint, plan.fingerprint())
            # 3. train
            trainer = build_trainer(plan, self, backbone, data, accelerator, user_callbacks,
                                    checkpoint_dir)
            try:
                result = trainer.fit(data.train, data.train_y, data.val, data.val_y,
                                     resume_from=checkpoint, labeled=labeled)
            except FloatingPointError:  # the trainer restored the last good weights: keep them
                keep_results(self, trainer.result(), plan, semi)
                raise
        keep_results(self, result, plan, semi)  # 4. keep the results
        say_if_interrupted(self)
        return self

    def _read_options(self, root, path_column, label_delim) -> ReadOptions:
        return ReadOptions(self.image_size, self.on_bad_image, self.verbose, self.cache_memory,
                           self.cache_dir, self.multi_label, self.unlabeled_label, root,
                           path_column, label_delim)

    def _new_backbone(self):
        # A user's module is copied: fit must not change the estimator's parameters.
        spec = copy.deepcopy(self.backbone) if isinstance(self.backbone, nn.Module) else self.backbone
        return create_backbone(spec, self.weights, placeholder_size(self.image_size))

    def _plan(self, params, facts, data, backbone, seed, val_size, accelerator, callback_names,
              digest) -> FitPlan:
        return make_plan(params, facts, seed=seed, lr=self.lr_, backbone=backbone,
                         n_train=len(data.train_y),
                         n_val=0 if data.val_y is None else len(data.val_y), val_size=val_size,
                         callback_names=callback_names,
                         bytes_per_value=4 if accelerator.mixed_precision == "no" else 2,
                         data_digest=digest)

    def _learning_rate(self, checkpoint, data) -> float:
        """``lr``, or for ``lr="auto"`` the LR range test's suggestion (the one a resumed fit
        already chose; the default 1e-3 when the sweep shows none). The sweep trains on
        the training images only; the held-out ones are its ``X_val``, so that its probe
        decides as this fit's will (a weak probe goes deeper): it sweeps the phase this
        fit will train."""
        if self.lr != "auto":
            return float(self.lr)
        if checkpoint is not None and "lr" in (checkpoint.get("fingerprint") or {}):
            return float(checkpoint["fingerprint"]["lr"])
        form = "indicator" if self.multi_label_ else self._label_form  # multi-label: fixed columns
        y_val = None if data.val is None else decode(data.val_y, self.classes_, form)
        try:
            self.lr_find_ = self.lr_find(data.train, decode(data.train_y, self.classes_, form),
                                         X_val=data.val, y_val=y_val)
        except NoPhaseToSweep as exc:  # a perfect probe ends the fit before any LR matters
            warnings.warn(f"lr='auto': {exc}; lr={AUTO_LR_FALLBACK} is kept.", stacklevel=3)
            self.lr_find_ = None
            return AUTO_LR_FALLBACK
        suggestion = self.lr_find_.suggestion
        return AUTO_LR_FALLBACK if suggestion is None else float(suggestion)

    def _seed(self, checkpoint) -> int:
        if self.random_state is not None:
            return int(self.random_state)
        if checkpoint is not None:  # an unseeded fit resumes with the seed it drew
            return int(checkpoint["fingerprint"]["seed"])
        return int(np.random.randint(0, 2**31 - 1))

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
