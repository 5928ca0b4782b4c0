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
from .callbacks.base import Callback

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


def fine_tune_epochs(n_train: int, batch_size: int, size: int = 224, pretrained: int = 224) -> int:
    """Epochs of the fine-tuning phase.

    :data:`FINE_TUNE_EPOCHS`, stretched to at least :data:`MIN_FINE_TUNE_STEPS`
    optimizer steps on small data and cut to :data:`MAX_FINE_TUNE_STEPS` (but
    never below one epoch) on large data; and never more than a compute budget
    of :data:`BUDGET_EPOCHS` epochs at the pretrained size, scaled by the
    pixels saved at a smaller input (2 epochs at 224 px, 10 at 96 px): the
    whole fit then stays several times cheaper than the notebook's 3 + 3
    epochs at 224 px.
    """
    steps_per_epoch = max(1, math.ceil(n_train / batch_size))
    steps = FINE_TUNE_EPOCHS * steps_per_epoch
    steps = min(max(steps, MIN_FINE_TUNE_STEPS), max(MAX_FINE_TUNE_STEPS, steps_per_epoch))
    budget = max(1, math.floor(BUDGET_EPOCHS * (pretrained / size) ** 2))
    return max(1, min(round(steps / steps_per_epoch), budget))


@dataclass(frozen=True)
class Plan:
    """What ``schedule="auto"`` decided from the class sizes; the phases follow once the
    input size is known (:meth:`phases`)."""

    counts: tuple
    batch_size: int
    lr: float

    @property
    def per_class(self) -> int:
        return int(np.median(self.counts))

    @property
    def few_shot(self) -> bool:
        return is_few_shot(self.counts)

    @property
    def val_size(self) -> float:
        return 0.0 if self.few_shot else VAL_FRACTION

    @property
    def groups(self):
        return "all" if self.per_class >= ALL_LAYERS_PER_CLASS else TOP_GROUPS

    def epochs(self, size: int, pretrained: int) -> int:
        n_train = int(round(sum(self.counts) * (1 - self.val_size)))
        return fine_tune_epochs(n_train, self.batch_size, size, pretrained)

    def phases(self, size: int, pretrained: int) -> list[Phase]:
        groups = self.groups
        return [Phase(1, 0, name="probe", probe=True),
                Phase(self.epochs(size, pretrained), groups, lr=FINE_TUNE_LR_SCALE * self.lr,
                      backbone_lr_mult=1.0, warmup_epochs=WARMUP_EPOCHS,
                      name="all" if groups == "all" else f"top{groups}")]

    def note(self, size: int, pretrained: int) -> str:
        """What the plan does, in words (progress output and the probe's ``history_`` row)."""
        what = "every layer" if self.groups == "all" else f"the top {self.groups} layer groups"
        text = (f"{size} px input, a linear probe, then {self.epochs(size, pretrained)} epochs "
                f"fine-tuning {what} at lr {FINE_TUNE_LR_SCALE * self.lr:g}")
        if self.few_shot:
            return text + (f"; {self.per_class} images per class (under {FEW_SHOT_PER_CLASS}): all "
                           "of them train, none held out, the last epoch is kept")
        return text + (f"; the best epoch on {VAL_FRACTION:.0%} held out is kept, and fine-tuning "
                       "is skipped if the probe gets every held-out image right")


def plan(counts, batch_size: int, lr: float = 1e-3) -> Plan:
    """The auto schedule for training-class sizes ``counts`` (images per class), the batch
    size, and the estimator's ``lr`` (fine-tuning runs at :data:`FINE_TUNE_LR_SCALE` x it)."""
    return Plan(tuple(int(c) for c in counts), int(batch_size), float(lr))


class PlanNote(Callback):
    """Says what the plan decided (progress output and the probe's ``history_`` row), and ends
    the fit after the probe when the probe already gets every held-out image right."""

    def __init__(self, note: str, stop_if_perfect: bool):
        self.note, self.stop_if_perfect = note, stop_if_perfect

    def on_train_begin(self, logs=None) -> None:
        if self.trainer.verbose >= 1 and self.trainer.accelerator.is_main_process:
            tqdm.write(f"easytl plan: {self.note}", file=sys.stderr)

    def on_epoch_end(self, epoch: int, logs: dict):
        if logs.get("phase") != "probe":
            return None
        row = self.trainer.history[-1]
        row["note"] = self.note
        if self.stop_if_perfect and logs.get("val_accuracy") == 1.0:
            row["note"] = ("the probe classifies every held-out image correctly: fine-tuning "
                           "skipped (nothing left to gain on the held-out data)")
            return True
        return None
