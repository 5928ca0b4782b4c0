"""Symmetries the data already has: a test after the probe that lets the plan add them to the
training augmentation.

A vertical flip or a quarter turn keeps the class of an inspection tile, a
texture or a cell image, and doubles or quadruples what a small training set
shows the network; on digits or upright photos it changes the class or
makes images unlike any the model will be asked about. Which one the data is
cannot be guessed from the images, but it can be measured cheaply once the
linear probe is solved: the probe has never seen a flipped or turned image,
so if it scores the held-out images flipped (turned) as well as upright, the
training images already came in every such orientation and adding them
changes nothing about what the model is asked, only how much it sees. If
the flipped (turned) images score worse, the data is not symmetric that way
and the augmentation is left alone.

The score is each held-out image's log-loss under the probe; a symmetry
passes when the mean increase is within :data:`SYMMETRY_Z` standard errors
plus :data:`SYMMETRY_SLACK` of the upright loss. Measured (Lite0 probe, loss
increase ± standard error, on the test images): digits at 96 px vertical flip
+1.44 ± 0.13 and quarter turn +1.56 ± 0.11 (fail), 400 digits at 32 px +0.56 ±
0.05 and +1.84 ± 0.09 (fail), the inspection proxy at 128 px +0.01 ± 0.04 and
-0.03 ± 0.05 (pass, upright loss 1.37). Horizontal flips are not tested: the
default recipe already uses them, and ImageNet features, trained with them,
barely tell a mirror image apart (digits: +0.06 ± 0.03).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

SYMMETRY_Z = 2.0      # standard errors of the mean loss increase a symmetry may show ...
SYMMETRY_SLACK = 0.1  # ... plus this fraction of the upright loss

# What the test applies to a batch of square model inputs (n, c, size, size).
SYMMETRIES = {
    "vertical flip": lambda x: x.flip(-2),
    "quarter turn": lambda x: torch.rot90(x, 1, dims=(-2, -1)),
}


@dataclass(frozen=True)
class SymmetryTest:
    """One symmetry's result: mean log-loss increase over the upright held-out images."""

    name: str
    upright_loss: float
    increase: float
    standard_error: float
    n_images: int

    @property
    def tolerance(self) -> float:
        return SYMMETRY_Z * self.standard_error + SYMMETRY_SLACK * self.upright_loss

    @property
    def passed(self) -> bool:
        return self.n_images > 1 and self.increase <= self.tolerance

    def describe(self) -> dict:
        return {"upright_loss": round(self.upright_loss, 4), "increase": round(self.increase, 4),
                "standard_error": round(self.standard_error, 4),
                "tolerance": round(self.tolerance, 4), "passed": self.passed}


def compare_losses(upright: np.ndarray, transformed: dict) -> list[SymmetryTest]:
    """Compare per-image losses of the upright held-out images with each symmetry's."""
    upright = np.asarray(upright, dtype=np.float64)
    tests = []
    for name, losses in transformed.items():
        increase = np.asarray(losses, dtype=np.float64) - upright
        n = len(increase)
        se = float(increase.std(ddof=1) / np.sqrt(n)) if n > 1 else float("inf")
        tests.append(SymmetryTest(name, float(upright.mean()) if n else 0.0,
                                  float(increase.mean()) if n else 0.0, se, n))
    return tests


def augmentation_for(tests) -> str | None:
    """The recipe the passed symmetries allow: ``"turns"`` (every symmetry of the square: both
    passed), ``"flips"`` (the vertical flip only) or None (keep the default)."""
    passed = {t.name for t in tests if t.passed}
    if passed >= set(SYMMETRIES):
        return "turns"
    if "vertical flip" in passed:
        return "flips"
    return None  # (a quarter turn with the default's horizontal flip implies the vertical one)


def note(tests, chosen: str | None) -> str:
    """The decision in words (the probe's ``history_`` row)."""
    def part(t):
        return f"{t.name} {t.increase:+.2f} (tolerance {t.tolerance:.2f})"
    measured = ", ".join(part(t) for t in tests)
    if chosen is None:
        return (f"the held-out images score worse flipped or turned ({measured}): the "
                "augmentation stays the default")
    added = ("vertical flips and quarter turns" if chosen == "turns" else "vertical flips")
    return (f"the probe scores the held-out images as well flipped or turned as upright "
            f"({measured}): training adds {added} (augment={chosen!r})")
