"""Symmetries the data has, or lacks: a test after the probe that lets the plan add them to
the training augmentation, or take the mirror image out of it.

A vertical flip or a quarter turn keeps the class of an inspection tile, a
texture or a cell image, and adds views of it the training set may lack; on
digits or upright photos it changes the class or makes images unlike any the
model will be asked about. Which one the data is cannot be guessed from the
images, but it can be measured cheaply once the linear probe is solved: the
probe has never seen a flipped or turned image, so if it classifies the
held-out images flipped (turned) as well as upright, what it learned about
the classes does not depend on that orientation, and training on such
views asks nothing new of the model. If they score worse, the classes (or
the images) are not symmetric that way and the augmentation is left alone
(for the mirror image, which the default recipe already uses, see below).
(Phases on cached activations see each image in ``cache_views`` random views
only; images that are not square are stretched to the square input first.)

The score is each held-out image's log-loss under the probe. What the probe
knows is how far its loss on the upright images is below the loss of
knowing only the class frequencies (the held-out labels' entropy). A symmetry
passes when it is *shown* to keep most of that: the mean loss increase plus
:data:`SYMMETRY_Z` standard errors is at most :data:`SYMMETRY_LOSS_SHARE` of
what the probe knows, over all held-out images and within each class that has
:data:`SYMMETRY_MIN_PER_CLASS` of them (what it knows about a class: how far
its loss there is below minus the log of the class's frequency), so that a
symmetry that turns two of ten classes into each other does not pass on the
other eight. A probe that knows little, or fewer than
:data:`SYMMETRY_MIN_IMAGES` held-out images, shows nothing, and the
augmentation stays as it is: a test that passed on missing evidence could add
turns to classes that depend on orientation. The probe's log-loss is that of
a logistic regression on pretrained features, which on weak features is
overconfident (on the inspection proxy its loss is near the class
frequencies' though its accuracy is above the majority class's): the test is
conservative there.
Measured (Lite0 probe, loss increase ± standard error, on the test images):
digits at 96 px upside down +1.44 ± 0.13 and turned +1.56 ± 0.11 (the probe
knows 2.15 nats: fail), 400 digits at 32 px +0.56 ± 0.05 and +1.84 ± 0.09
(fail); on the inspection proxy at 128 px +0.01 ± 0.04 and -0.03 ± 0.05, but
its probe's loss (1.37) is no better than the class frequencies' (1.06) and
at 224 px (800 or 2,000 images) only 0.01-0.09 nats below them: too little to
show anything, so nothing is added.

The mirror image, which the default recipe already uses, stays only when it
is shown to keep what the probe knows (the test above), or when the probe
knows too little to tell (under :data:`MIRROR_MIN_KNOWN_SHARE` of the class
frequencies' loss: a weak probe's loss is mostly noise). Otherwise the recipe
becomes ``"no_mirror"``, and test-time augmentation leaves out mirror images
too. ``harmful`` (recorded) says whether it was also shown to harm: the mean
loss increase minus :data:`SYMMETRY_Z` standard errors above
:data:`MIRROR_HARM_SHARE` of what the probe knows. With fewer than
:data:`SYMMETRY_MIN_IMAGES` held-out images the losses are those of the
training images under cross-fitted probes
(:meth:`~easytl.training.evaluation.Evaluation.cross_fitted_losses`). The bar is lower than the one a
symmetry must stay under to be added because the features differ: ImageNet
features were trained on mirror images, so they barely move under one and a
loss increase there comes from the classes; they were not trained on flipped
or turned images, so part of any increase there is the features' and a
symmetry the classes have still costs the probe some loss. ImageNet features
barely tell a mirror image apart on large inputs (400 digits at 96 px:
-0.05 ± 0.09, harmless), but on small ones they do, and there the flip costs
accuracy: 1,347 digits at 32 px +0.48 ± 0.09 (test accuracy 0.929 with
the flip, 0.969 without), 400 at 32 px +0.19 to
+0.66 over four seeds (2.4-6.8 points lost to the flip; shown in one seed of
four with 40 held-out images), 400 at 96 px -0.05 ± 0.09 (0.936 with the
flip, 0.935 without).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

SYMMETRY_Z = 2.0            # standard errors added to the mean loss increase ...
SYMMETRY_LOSS_SHARE = 0.25  # ... which must stay within this share of what the probe knows
SYMMETRY_MIN_IMAGES = 30    # held-out images the test needs at all ...
SYMMETRY_MIN_PER_CLASS = 5  # ... and per class for that class to be tested on its own
MIRROR_HARM_SHARE = 0.05    # a mirror image shown to lose more than this share: no mirror flips,
MIRROR_MIN_KNOWN_SHARE = 0.1  # if the probe knows this share of the class frequencies' loss

# What the test applies to a batch of square model inputs (n, c, size, size).
SYMMETRIES = {
    "vertical flip": lambda x: x.flip(-2),
    "quarter turn": lambda x: torch.rot90(x, 1, dims=(-2, -1)),
    "mirror image": lambda x: x.flip(-1),
}
MIRROR = "mirror image"


@dataclass(frozen=True)
class SymmetryTest:
    """One symmetry's result on the held-out images (losses in nats per image)."""

    name: str
    upright_loss: float      # the probe's mean log-loss on the upright images
    prior_loss: float        # knowing only the class frequencies (their entropy)
    increase: float          # mean loss increase under the symmetry
    standard_error: float    # of that mean
    n_images: int
    worst_class: str | None = None   # the class that failed its own test, if any

    @property
    def probe_knows(self) -> float:
        return self.prior_loss - self.upright_loss

    @property
    def passed(self) -> bool:
        """Shown to keep what the probe knows (overall and in every class tested)."""
        return (self.n_images >= SYMMETRY_MIN_IMAGES and self.worst_class is None
                and _shown(self.increase, self.standard_error, self.probe_knows))

    @property
    def harmful(self) -> bool:
        """Shown to lose more than :data:`MIRROR_HARM_SHARE` of what the probe knows (and not
        shown to keep most of it), by a probe that knows enough to show it."""
        return (self.n_images >= SYMMETRY_MIN_IMAGES and not self.passed
                and self.probe_knows >= MIRROR_MIN_KNOWN_SHARE * self.prior_loss
                and self.increase - SYMMETRY_Z * self.standard_error
                > MIRROR_HARM_SHARE * self.probe_knows)

    @property
    def not_shown_harmless(self) -> bool:
        """For the mirror image: a probe that knows enough to tell, and the mirror not shown to
        keep what it knows (then the default leaves mirror images out)."""
        # over all images only: one noisy class test among many must not take the flip away
        return (self.n_images >= SYMMETRY_MIN_IMAGES
                and not _shown(self.increase, self.standard_error, self.probe_knows)
                and self.probe_knows >= MIRROR_MIN_KNOWN_SHARE * self.prior_loss)

    def describe(self) -> dict:
        out = {"upright_loss": round(self.upright_loss, 4), "prior_loss": round(self.prior_loss, 4),
               "increase": round(self.increase, 4),
               "standard_error": round(self.standard_error, 4) if self.n_images > 1 else None,
               "n_images": self.n_images, "worst_class": self.worst_class, "passed": self.passed}
        if self.name == MIRROR:  # the one symmetry tested for harm (the default already has it)
            out["harmful"] = self.harmful
        return out


def _shown(increase: float, standard_error: float, knows: float) -> bool:
    return knows > 0 and increase + SYMMETRY_Z * standard_error <= SYMMETRY_LOSS_SHARE * knows


def _mean_and_se(values: np.ndarray) -> tuple[float, float]:
    n = len(values)
    return (float(values.mean()) if n else 0.0,
            float(values.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan"))


def compare_losses(upright: np.ndarray, transformed: dict, labels: np.ndarray) -> list[SymmetryTest]:
    """Compare per-image losses of the upright held-out images with each symmetry's."""
    upright = np.asarray(upright, dtype=np.float64)
    labels = np.asarray(labels)
    n = len(upright)
    classes, counts = np.unique(labels, return_counts=True)
    shares = counts / max(n, 1)
    prior = float(-(shares * np.log(shares)).sum()) if n else 0.0
    tests = []
    for name, losses in transformed.items():
        increase = np.asarray(losses, dtype=np.float64) - upright
        worst = None
        for c, share, count in zip(classes, shares, counts):
            if count >= SYMMETRY_MIN_PER_CLASS:
                mask = labels == c
                knows_c = -np.log(share) - float(upright[mask].mean())
                if not _shown(*_mean_and_se(increase[mask]), knows_c):
                    worst = str(c)
                    break
        mean, se = _mean_and_se(increase)
        tests.append(SymmetryTest(name, float(upright.mean()) if n else 0.0, prior, mean, se, n,
                                  worst))
    return tests


def augmentation_for(tests) -> str | None:
    """The recipe the tests call for: ``"no_mirror"`` (the mirror image not shown to keep the
    classes, by a probe that knows enough to tell; it outranks flips and turns, which include
    mirror images),
    ``"turns"`` (every symmetry of the square: the vertical flip and the quarter turn passed),
    ``"flips"`` (the vertical flip passed) or None (keep the default)."""
    if any(t.name == MIRROR and t.not_shown_harmless for t in tests):
        return "no_mirror"
    passed = {t.name for t in tests if t.passed}
    # The mirror need not pass as well: a vertical flip after a half turn is the mirror image,
    # so the two that passed generate every symmetry of the square.
    if {"vertical flip", "quarter turn"} <= passed:
        return "turns"
    if "vertical flip" in passed:
        return "flips"
    # A quarter turn alone adds nothing: with the default's horizontal flip it would also make
    # vertical flips, which the test did not show to keep the classes.
    return None


def note(tests, chosen: str | None, evidence: str = "held-out") -> str:
    """The decision in words (the probe's ``history_`` row); ``evidence`` names the images
    scored ("held-out", or "training (cross-fitted)" when too few are held out)."""
    if not tests or tests[0].n_images < SYMMETRY_MIN_IMAGES:
        return (f"under {SYMMETRY_MIN_IMAGES} {evidence} images (or a class of one): too few to "
                "test flips, turns and mirror images, the augmentation stays the default")
    knows = tests[0].probe_knows
    if knows <= 0:
        return (f"the probe's held-out loss ({tests[0].upright_loss:.2f}) is no better than the "
                f"class frequencies' ({tests[0].prior_loss:.2f}), so it cannot show whether flips, "
                "turns or mirror images keep the classes: the augmentation stays the default")

    def verdict(t):
        if t.name != MIRROR and t.passed and chosen == "no_mirror":
            return "shown to keep, not added: every recipe that flips vertically mirrors too"
        if t.name == MIRROR:  # in the default recipe only while shown to keep the classes
            return ("shown to change the classes" if t.harmful else "kept" if t.passed else
                    "not shown to keep the classes, left out" if t.not_shown_harmless else
                    "too little known to tell, kept")
        if t.passed:
            return "kept"
        if t.worst_class is None or not _shown(t.increase, t.standard_error, t.probe_knows):
            return "not shown to keep"
        return f"not shown to keep for class {t.worst_class!r}"
    parts = ", ".join(f"{t.name} {t.increase:+.2f} ± {t.standard_error:.2f} ({verdict(t)})"
                      for t in tests)
    what = {"turns": "adds vertical flips and quarter turns (augment='turns')",
            "flips": "adds vertical flips (augment='flips')",
            "no_mirror": "leaves out its mirror images (augment='no_mirror')",
            None: "stays the default"}[chosen]
    return (f"the probe knows {knows:.2f} nats beyond the class frequencies; the loss on flipped, "
            f"turned or mirrored {evidence} images rises by: {parts}; the augmentation {what}")
