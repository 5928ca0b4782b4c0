"""Defaults that adapt to the data: the input size, the schedule and its length.

``TransferClassifier()`` with ``image_size="auto"``, ``schedule="auto"`` and
``epochs=None`` (the defaults) plans its fit from the training images:

* **Input size.** Small images are upsampled by a bounded factor instead of
  always to the backbone's pretrained size: the median shorter side times
  :data:`UPSAMPLE`, rounded to a multiple of 32, between :data:`MIN_SIZE` and
  the pretrained size (photos of that size or more keep it). Measured on
  scikit-learn's 8 px digits, a linear probe on EfficientNet-Lite0 features
  scores 0.89 / 0.96 / 0.95 / 0.96 / 0.94 / 0.96 / 0.96 at 32 / 48 / 64 / 96 /
  128 / 160 / 224 px (1347 training images), while a forward pass costs 12x
  less at 64 px than at 224; BiT's hyper-rule (Kolesnikov et al., 2020) makes
  the same call for images under 96 px.
* **Schedule (LP-FT).** A linear probe first: logistic regression solved on
  the frozen features (Kumar et al., ICLR 2022), which is also the whole fit on
  few-shot data; then the top layer groups (every layer on very large data,
  or after a weak probe) fine-tune from that head at one small learning
  rate, with warmup and cosine decay, for a length set in optimizer steps
  from the data size.
* **Validation.** Few-shot data is not split (a tenth of 10 images per class is
  one image, and an epoch chosen on it is chosen by noise); otherwise 10% is
  held out and the best epoch, the probe included, is restored. A probe that
  already classifies every held-out image correctly ends the fit.
* **A weak probe goes deeper.** When the probe's balanced accuracy on the
  held-out images is under :data:`WEAK_PROBE_BELOW`, the pretrained features
  do not separate the classes (images far from ImageNet: gray inspection
  tiles with faint defects), and fine-tuning the top groups from them is not
  enough: every layer but the stem fine-tunes instead, :data:`DEEP_LENGTH`
  times as long (and within that many times the compute budget), on images
  (no cache). The plan holds both (``FitPlan.if_probe_weak``); the trainer
  picks after the probe.
"""

from __future__ import annotations

import math
import numpy as np

UPSAMPLE = 6            # target input size = this x the median shorter side ...
MIN_SIZE = 96           # ... but never below this: fine-tuning measured better at 96 than 64 px
SIZE_MULTIPLE = 32      # the networks' total stride
SIZE_SAMPLE = 256       # images whose native size is looked at (headers only for files)

FEW_SHOT_PER_CLASS = 30  # below this many images per class nothing is held out for validation
FINE_TUNE_LR_SCALE = 0.3  # after the probe, head and backbone train at 0.3 x lr (3e-4)
TOP_GROUPS = 3           # layer groups fine-tuned (the notebook's rule for up to 10k per class) ...
ALL_LAYERS_PER_CLASS = 10_000  # ... every layer from this many images per class (its rule too)
FINE_TUNE_EPOCHS = 6     # on small and mid-sized data (digits: 4 -> 0.973, 6 -> 0.984, 8 -> 0.980) ...
MIN_FINE_TUNE_STEPS = 60     # ... but at least this many optimizer steps ...
MAX_FINE_TUNE_STEPS = 600    # ... and at most this many (or one epoch, if that is more)
WARMUP_EPOCHS = 0.5
BUDGET_EPOCHS = 2        # fine-tuning compute: at most this many epochs at the pretrained size
VAL_FRACTION = 0.1

# A weak probe: features that do not separate the classes (see weak_probe_note)
WEAK_PROBE_BELOW = 0.85  # probe's balanced accuracy on the held-out images under which ...
DEEP_LENGTH = 2          # ... the network fine-tunes, this many times as long (and budget) ...
DEEP_FROZEN_GROUPS = 1  # ... all but the stem (the lowest group): freezing it (no weight gradients
# of the full-size input's convolution, no input gradient of the block above) took the proxy's deep
# phase from 200.7 s to 156.6 s, two quiet runs on this AVX2 CPU, at 0.715 vs 0.710 accuracy ...
# ... at one LR: on the inspection proxy a layer-wise decay of 0.8 (each group below the top at
# 0.8 x the LR of the one above) reached 0.668 against 0.710 without (the low layers must adapt)
LAYER_LR_DECAY = None


def auto_image_size(native_short_side: float, pretrained: int) -> int:
    """The input size for images whose median shorter side is ``native_short_side`` px."""
    target = SIZE_MULTIPLE * math.floor(native_short_side * UPSAMPLE / SIZE_MULTIPLE + 0.5)
    return int(min(pretrained, max(MIN_SIZE, target)))


def median_short_side(source, max_images: int = SIZE_SAMPLE, seed: int = 0) -> float:
    """Median shorter side of (a seeded sample of) the images in ``source``, as given."""
    n = len(source)
    picks = np.arange(n) if n <= max_images else \
        np.sort(np.random.default_rng(seed).choice(n, max_images, replace=False))
    return float(np.median([min(source.native_size(int(i))) for i in picks]))


def is_few_shot(counts) -> bool:
    """Fewer than :data:`FEW_SHOT_PER_CLASS` training images in the median class."""
    return float(np.median(counts)) < FEW_SHOT_PER_CLASS


def fine_tune_epochs(n_train: int, batch_size: int, size: int = 224, pretrained: int = 224,
                     length: float = 1) -> int:
    """Epochs of the fine-tuning phase.

    :data:`FINE_TUNE_EPOCHS`, stretched to at least :data:`MIN_FINE_TUNE_STEPS`
    optimizer steps on small data and cut to :data:`MAX_FINE_TUNE_STEPS` (but
    never below one epoch) on large data; and never more than a compute budget
    of :data:`BUDGET_EPOCHS` epochs at the pretrained size, scaled by the
    pixels saved at a smaller input (2 epochs at 224 px, 10 at 96 px): the
    whole fit then stays several times cheaper than the notebook's 3 + 3
    epochs at 224 px. ``length`` scales the epochs, the step bounds and the budget
    together (:data:`DEEP_LENGTH` after a weak probe).
    """
    steps_per_epoch = max(1, math.ceil(n_train / batch_size))
    steps = FINE_TUNE_EPOCHS * length * steps_per_epoch
    steps = min(max(steps, MIN_FINE_TUNE_STEPS * length),
                max(MAX_FINE_TUNE_STEPS * length, steps_per_epoch))
    budget = max(1, math.floor(BUDGET_EPOCHS * length * (pretrained / size) ** 2))
    return max(1, min(round(steps / steps_per_epoch), budget))


def fine_tune_groups(per_class: int):
    """Layer groups the plan fine-tunes: the top :data:`TOP_GROUPS`, or every layer from
    :data:`ALL_LAYERS_PER_CLASS` images per class (the notebook's rules of thumb)."""
    return "all" if per_class >= ALL_LAYERS_PER_CLASS else TOP_GROUPS


def deep_groups(n_groups: int):
    """Layer groups fine-tuned after a weak probe: all but the lowest :data:`DEEP_FROZEN_GROUPS`
    (all of them on a backbone too small to spare one beyond the :data:`TOP_GROUPS`)."""
    trained = n_groups - DEEP_FROZEN_GROUPS
    return trained if trained > TOP_GROUPS else "all"


def deep_words(groups) -> str:
    """The deeper fine-tuning's layers, in words."""
    return "every layer" if groups == "all" else "every layer but the stem (the lowest group)"


def describe(size: int, epochs: int, groups, lr: float, facts, n_val: int, val_size,
             deep_epochs: int | None = None, symmetries: bool = False, deep_groups="all",
             augment="default") -> str:
    """What the plan does, in words (progress output and the probe's ``history_`` row): short
    clauses joined by "; ", which the progress output prints one a line."""
    what = "every layer" if groups == "all" else f"the top {groups} layer groups"
    text = f"a linear probe at {size} px, then {epochs} epochs fine-tuning {what} at lr {lr:g}"
    if deep_epochs is not None:
        text += (f"; {deep_words(deep_groups)} for {deep_epochs} epochs instead if the probe's "
                 f"held-out balanced accuracy is under {WEAK_PROBE_BELOW:g}")
    if symmetries:
        text += ("; vertical flips and quarter turns added to the augmentation if the probe "
                 "shows that flipped and turned images keep their classes (mirror images left out "
                 "unless it shows they keep them, or it knows too little to tell)")
    elif augment != "default":  # a recipe the user chose: say it was heard
        text += (", no augmentation" if augment is None else f", augment={augment!r}"
                 if isinstance(augment, str) else ", the given augmentation")
    if n_val == 0 and val_size == 0:
        why = (f"a median of {facts.per_class} images per class (under {FEW_SHOT_PER_CLASS})"
               if is_few_shot(facts.counts) else "val_size=0")
        return text + f"; {why}: all train, none held out, the last epoch is kept"
    held = f"{val_size:.0%} held out" if isinstance(val_size, float) and val_size > 0 else \
        f"{n_val} validation images"
    return text + (f"; the best epoch on {held} is kept; fine-tuning is skipped if the probe "
                   "gets every held-out image right")


def weak_probe_note(score: float, size: int, epochs: int, lr: float, groups="all",
                    n_val: int | None = None) -> str:
    """Why a fit went deeper (the probe's ``history_`` row and the progress output)."""
    held = "the held-out images" if n_val is None else f"the {n_val} held-out images"
    return (f"the linear probe reaches only {score:.2f} balanced accuracy on {held} (under "
            f"{WEAK_PROBE_BELOW:g}); the pretrained features do not seem to separate these "
            f"classes well (or the labels are noisy); so {deep_words(groups)} fine-tunes instead, "
            f"for {epochs} epochs at lr {lr:g} and {size} px")
