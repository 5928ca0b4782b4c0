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
  few-shot data; then, given enough images per class, every layer is
  fine-tuned from that head at one small learning rate, with warmup and cosine
  decay, for a length set in optimizer steps from the data size.
* **Validation.** Few-shot data is not split (a tenth of 10 images per class is
  one image, and an epoch chosen on it is chosen by noise); otherwise 10% is
  held out and the best epoch, the probe included, is restored. A probe that
  already classifies every held-out image correctly ends the fit.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from .schedules import Phase
from .training import Callback

UPSAMPLE = 6            # target input size = this x the median shorter side ...
MIN_SIZE = 96           # ... but never below this: fine-tuning measured better at 96 than 64 px
SIZE_MULTIPLE = 32      # the networks' total stride
SIZE_SAMPLE = 256       # images whose native size is looked at (headers only for files)

FEW_SHOT_PER_CLASS = 30  # below this many images per class nothing is held out for validation
FINE_TUNE_LR_SCALE = 0.3  # after the probe, head and backbone train at 0.3 x lr (3e-4)
TOP_GROUPS = 3           # layer groups fine-tuned (the notebook's rule for up to 10k per class) ...
ALL_LAYERS_PER_CLASS = 10_000  # ... every layer from this many images per class (its rule too)
FINE_TUNE_EPOCHS = 4     # on small and mid-sized data ...
MIN_FINE_TUNE_STEPS = 60     # ... but at least this many optimizer steps ...
MAX_FINE_TUNE_STEPS = 600    # ... and at most this many (or one epoch, if that is more)
WARMUP_EPOCHS = 0.5
VAL_FRACTION = 0.1


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


@dataclass(frozen=True)
class Plan:
    """What ``schedule="auto"`` decided: phases, the validation fraction, and why."""

    phases: list
    val_size: float
    note: str


def is_few_shot(counts) -> bool:
    """Fewer than :data:`FEW_SHOT_PER_CLASS` training images in the median class."""
    return float(np.median(counts)) < FEW_SHOT_PER_CLASS


def fine_tune_epochs(n_train: int, batch_size: int) -> int:
    """Epochs of the fine-tuning phase: :data:`FINE_TUNE_EPOCHS`, stretched to at least
    :data:`MIN_FINE_TUNE_STEPS` steps on small data, cut to :data:`MAX_FINE_TUNE_STEPS`
    steps (but never below one epoch) on large data."""
    steps_per_epoch = max(1, math.ceil(n_train / batch_size))
    steps = FINE_TUNE_EPOCHS * steps_per_epoch
    steps = min(max(steps, MIN_FINE_TUNE_STEPS), max(MAX_FINE_TUNE_STEPS, steps_per_epoch))
    return max(1, round(steps / steps_per_epoch))


def plan(counts, batch_size: int, lr: float = 1e-3) -> Plan:
    """The auto schedule for training-class sizes ``counts`` (images per class) and the
    estimator's ``lr`` (fine-tuning runs at :data:`FINE_TUNE_LR_SCALE` times it)."""
    counts = np.asarray(counts)
    per_class = int(np.median(counts))
    few_shot = is_few_shot(counts)
    val_size = 0.0 if few_shot else VAL_FRACTION
    n_train = int(round(counts.sum() * (1 - val_size)))
    epochs = fine_tune_epochs(n_train, batch_size)
    groups = "all" if per_class >= ALL_LAYERS_PER_CLASS else TOP_GROUPS
    tune_lr = FINE_TUNE_LR_SCALE * lr
    phases = [Phase(1, 0, name="probe", probe=True),
              Phase(epochs, groups, lr=tune_lr, backbone_lr_mult=1.0, warmup_epochs=WARMUP_EPOCHS,
                    name="all" if groups == "all" else f"top{groups}")]
    what = "every layer" if groups == "all" else f"the top {groups} layer groups"
    note = f"linear probe, then {epochs} epochs fine-tuning {what} at lr {tune_lr:g}"
    if few_shot:
        note += (f"; {per_class} images per class (under {FEW_SHOT_PER_CLASS}): all of them train, "
                 "none held out, the last epoch is kept")
    else:
        note += (f"; the best epoch on {VAL_FRACTION:.0%} held out is kept, and fine-tuning is "
                 "skipped if the probe gets every held-out image right")
    return Plan(phases, val_size, note)


class PlanNote(Callback):
    """Says what the plan decided (progress output and the probe's ``history_`` row), and ends
    the fit after the probe when the probe already gets every held-out image right."""

    def __init__(self, plan: Plan, stop_if_perfect: bool):
        self.plan, self.stop_if_perfect = plan, stop_if_perfect

    def on_train_begin(self, logs=None) -> None:
        if self.trainer.verbose >= 1 and self.trainer.accelerator.is_main_process:
            tqdm.write(f"easytl plan: {self.plan.note}", file=sys.stderr)

    def on_epoch_end(self, epoch: int, logs: dict):
        if logs.get("phase") != "probe":
            return None
        row = self.trainer.history[-1]
        row["note"] = self.plan.note
        if self.stop_if_perfect and logs.get("val_accuracy") == 1.0:
            row["note"] = ("the probe classifies every held-out image correctly: fine-tuning "
                           "skipped (nothing left to gain on the held-out data)")
            return True
        return None
