"""Learning from unlabeled images: confident pseudo-labels from the frozen backbone's features.

``fit(X, y, X_unlabeled=U)`` (or images of ``X`` labelled ``unlabeled_label``)
runs these steps after the validation split, before training:

1. **Features.** The pretrained backbone's pooled features of the labeled
   training images and of ``U``, at the plan's input size, unaugmented.
2. **Pseudo-labels.** Label spreading over a k-nearest-neighbour graph of the
   L2-normalised features (Zhou et al., 2004; scikit-learn's ``LabelSpreading``)
   and the linear probe (logistic regression on the labeled features) each
   label ``U``; an image is pseudo-labeled where both agree and the spreading
   is confident (:data:`MIN_CONFIDENCE`). Measured on digits with 5, 10 and 20
   labels per class, agreement at 0.9 beat spreading alone and probe self-training
   alone at every k (probe accuracy +5.4, +3.2 and +1.7 points over the labeled
   images alone, 3 draws, ~1,200 unlabeled digits; the whole fit's gains are in
   README, "Learning from unlabeled images").
3. **The check.** Cross-validation on the labeled images only: in each fold the
   probe is fitted on the other folds with and without the pseudo-labels that
   those folds alone give ``U``, and scored on the fold. The pseudo-labels are
   used only if they gain at least :data:`MIN_GAIN` of the labeled images (and
   two images); otherwise the fit falls back to the labeled images alone, equal
   to a fit without ``U``, and says so. When the probe alone already gets every
   labeled image right there is nothing to gain, and no feature of ``U`` is computed.
4. **Training.** When used, the pseudo-labeled images join the *training* part of
   the split: the validation split, the best epoch, calibration and the novelty
   statistics see labeled images only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from ..constants import eval_batch_size
from ..data.combined import combine
from ..data.sources import batches

MIN_CONFIDENCE = 0.9    # label spreading's class probability a pseudo-label needs (with the probe agreeing)
NEIGHBOURS = 10         # of the kNN graph label spreading runs on
SPREAD_ALPHA = 0.2      # how much of its label a labeled image may lose to its neighbours
MIN_GAIN = 0.01         # cross-validated accuracy the pseudo-labels must add (and 2 images) to be used
MIN_GAIN_IMAGES = 2
FOLDS = 5               # at most; at least 2 labeled images per class are needed to check at all
CHECK_UNLABELED = 3000  # unlabeled images the check pseudo-labels (a seeded sample beyond it)
PROBE_C = 1.0           # the linear probe's C (easytl.training.probe)


@dataclass(frozen=True)
class SemiSupervised:
    """What a fit did with its unlabeled images (``plan_["semi_supervised"]``)."""

    used: bool
    n_unlabeled: int
    n_pseudo_labeled: int           # confident pseudo-labels (added to training when used)
    cv_accuracy_without: float | None
    cv_accuracy_with: float | None
    n_checked: int                  # labeled images the cross-validated check scored
    note: str

    def describe(self) -> dict:
        return asdict(self)


# -- features ----------------------------------------------------------------------------------
@torch.inference_mode()
def pooled_features(backbone, source, preprocess, batch_size: int, accelerator,
                    num_workers=0) -> np.ndarray:
    """The (frozen, eval-mode) backbone's pooled features of every image of ``source``."""
    device = accelerator.device
    was_training = backbone.training
    backbone.to(device).eval()
    rows = []
    try:
        for images, _ in batches(source, None, eval_batch_size(batch_size), num_workers=num_workers):
            x = preprocess(images.to(device), train=False)
            with accelerator.autocast():
                rows.append(backbone.forward_features(x).float().cpu())
    finally:
        backbone.train(was_training)
    return torch.cat(rows).numpy() if rows else np.zeros((0, backbone.num_features), np.float32)


# -- pseudo-labels -----------------------------------------------------------------------------
def _probe(features, targets):
    from sklearn.linear_model import LogisticRegression
    return LogisticRegression(C=PROBE_C, max_iter=2000).fit(features, targets)


def _normalised(features: np.ndarray) -> np.ndarray:
    return features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)


def pseudo_labels(features_l: np.ndarray, y_l: np.ndarray, features_u: np.ndarray,
                  n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions in ``features_u`` that get a confident pseudo-label, and those labels
    (label spreading and the probe agree, spreading at :data:`MIN_CONFIDENCE` or more)."""
    from sklearn.semi_supervised import LabelSpreading
    if len(features_u) == 0 or len(np.unique(y_l)) < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    both = _normalised(np.concatenate([features_l, features_u]))
    targets = np.concatenate([y_l, np.full(len(features_u), -1)])
    neighbours = min(NEIGHBOURS, len(both) - 1)
    spreading = LabelSpreading(kernel="knn", n_neighbors=neighbours, alpha=SPREAD_ALPHA,
                               max_iter=100).fit(both, targets)
    distribution = spreading.label_distributions_[len(features_l):]
    spread_label = spreading.classes_[distribution.argmax(1)]
    confidence = np.nan_to_num(distribution.max(1))
    probe_label = _probe(features_l, y_l).predict(features_u)
    keep = np.flatnonzero((spread_label == probe_label) & (confidence >= MIN_CONFIDENCE))
    return keep.astype(np.int64), spread_label[keep].astype(np.int64)


def cross_validated_check(features_l: np.ndarray, y_l: np.ndarray, features_u: np.ndarray,
                          n_classes: int, seed: int) -> tuple[int, int, int] | None:
    """(correct without, correct with pseudo-labels, images scored) over stratified folds of
    the labeled images; None when a class has fewer than 2 labeled images."""
    folds = _folds(y_l, n_classes, seed)
    if folds is None:
        return None
    if len(features_u) > CHECK_UNLABELED:
        features_u = features_u[np.random.default_rng(seed).choice(len(features_u), CHECK_UNLABELED,
                                                                   replace=False)]
    without = with_ = scored = 0
    for train, test in folds:
        base = _probe(features_l[train], y_l[train])
        without += int((base.predict(features_l[test]) == y_l[test]).sum())
        positions, labels = pseudo_labels(features_l[train], y_l[train], features_u, n_classes)
        if len(positions):
            model = _probe(np.concatenate([features_l[train], features_u[positions]]),
                           np.concatenate([y_l[train], labels]))
            with_ += int((model.predict(features_l[test]) == y_l[test]).sum())
        else:  # nothing pseudo-labeled: the same probe
            with_ += int((base.predict(features_l[test]) == y_l[test]).sum())
        scored += len(test)
    return without, with_, scored


def _folds(y_l: np.ndarray, n_classes: int, seed: int) -> list | None:
    """Stratified folds of the labeled images (train, test positions); None when a class has
    fewer than 2 of them."""
    from sklearn.model_selection import StratifiedKFold
    counts = np.bincount(y_l, minlength=n_classes)
    folds = int(min(FOLDS, counts[counts > 0].min()))
    if folds < 2 or (counts > 0).sum() < 2:
        return None
    return list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(y_l[:, None], y_l))


def probe_is_perfect(features_l: np.ndarray, y_l: np.ndarray, n_classes: int, seed: int) -> bool:
    """Whether the probe already classifies every labeled image right in cross-validation
    (then pseudo-labels cannot show a gain, and the unlabeled images need no features)."""
    from threadpoolctl import threadpool_limits
    folds = _folds(y_l, n_classes, seed)
    if folds is None:
        return False
    with threadpool_limits(limits=1, user_api="blas"):
        return all((_probe(features_l[train], y_l[train]).predict(features_l[test]) == y_l[test]).all()
                   for train, test in folds)


def decide(features_l: np.ndarray, y_l: np.ndarray, features_u: np.ndarray, n_classes: int,
           seed: int) -> tuple[SemiSupervised, np.ndarray, np.ndarray]:
    """Whether pseudo-labels help (the cross-validated check) and, when they do, which
    unlabeled images get which label. Returns the decision, positions and labels (empty
    when not used)."""
    from threadpoolctl import threadpool_limits
    if y_l.ndim != 1:
        raise ValueError("X_unlabeled (and unlabeled_label) are for single-label data; a multi-label "
                         "fit cannot use unlabeled images.")
    # One BLAS thread: these fits are small (a few thousand rows), and on a busy machine a
    # BLAS thread pool that spins waiting for cores made them 20-50x slower (measured).
    with threadpool_limits(limits=1, user_api="blas"):
        return _decide(features_l, y_l, features_u, n_classes, seed)


def _decide(features_l, y_l, features_u, n_classes: int, seed: int):
    empty = np.zeros(0, np.int64)
    n_u = len(features_u)
    check = cross_validated_check(features_l, y_l, features_u, n_classes, seed)
    if check is None:
        note = (f"{n_u} unlabeled images not used: the check on the labeled images needs at least "
                "2 labeled images in every class")
        return SemiSupervised(False, n_u, 0, None, None, 0, note), empty, empty
    without, with_, scored = check
    positions, labels = pseudo_labels(features_l, y_l, features_u, n_classes)
    needed = max(MIN_GAIN_IMAGES, int(np.ceil(MIN_GAIN * scored)))
    used = with_ - without >= needed and len(positions) > 0
    accuracy = f"{without / scored:.3f} -> {with_ / scored:.3f} ({scored}-image cross-validation)"
    if used:
        note = (f"{len(positions)} of {n_u} unlabeled images pseudo-labeled and added to training: "
                f"probe accuracy {accuracy}")
    else:
        note = (f"{n_u} unlabeled images not used: pseudo-labels did not raise the probe's accuracy "
                f"on the labeled images by {needed} images ({accuracy}); trained on the labeled "
                "images alone")
    decision = SemiSupervised(bool(used), n_u, int(len(positions)), without / scored, with_ / scored,
                              scored, note)
    return (decision, positions, labels) if used else (decision, empty, empty)


def learn_from_unlabeled(train, train_y, unlabeled, backbone, preprocess, batch_size: int,
                         accelerator, n_classes: int, seed: int, num_workers=0):
    """The training images with confident pseudo-labeled images added (when the check says
    they help): (images, labels, the decision, a mask of the rows that are labeled).

    Validation is not touched: it is not an argument.
    """
    y_l = np.asarray(train_y)
    labeled = np.ones(len(y_l), dtype=bool)
    if not len(unlabeled):
        note = ("no unlabeled image used: every image of X_unlabeled is a labeled image of X or "
                "X_val")
        return train, y_l, SemiSupervised(False, 0, 0, None, None, 0, note), labeled
    features_l = pooled_features(backbone, train, preprocess, batch_size, accelerator, num_workers)
    if probe_is_perfect(features_l, y_l, n_classes, seed):
        note = (f"{len(unlabeled)} unlabeled images not used: the probe already classifies every "
                f"labeled image right in cross-validation ({len(y_l)} images); nothing to gain")
        return (train, y_l, SemiSupervised(False, len(unlabeled), 0, 1.0, None, len(y_l), note),
                labeled)
    features_u = pooled_features(backbone, unlabeled, preprocess, batch_size, accelerator,
                                 num_workers)
    decision, positions, labels = decide(features_l, y_l, features_u, n_classes, seed)
    if not decision.used:
        return train, y_l, decision, labeled
    return (combine([train, unlabeled.subset(positions)]), np.concatenate([y_l, labels]), decision,
            np.concatenate([labeled, np.zeros(len(positions), dtype=bool)]))


def with_unlabeled(data, backbone, plan, accelerator, n_classes: int):
    """A fit's data (:class:`~easytl.data.fit_data.FitData`) with pseudo-labeled images added
    to training when they help: (data, the decision or None, which training rows carry a
    given label or None)."""
    if data.unlabeled is None:
        return data, None, None
    from ..data.augment import Preprocessor
    for part in (data.train, data.unlabeled):
        if hasattr(part, "size"):
            part.size = plan.image_size
    preprocess = Preprocessor(plan.image_size, backbone.data_config["mean"],
                              backbone.data_config["std"], augment=None)
    train, train_y, semi, labeled = learn_from_unlabeled(
        data.train, data.train_y, data.unlabeled, backbone, preprocess, plan.batch_size,
        accelerator, n_classes, plan.seed, plan.num_workers)
    if plan.verbose and accelerator.is_main_process:  # said as it is decided, as the plan is
        import sys
        from tqdm.auto import tqdm
        tqdm.write(f"easytl unlabeled images: {semi.note}", file=sys.stderr)
    return data.with_training(train, train_y), semi, labeled
