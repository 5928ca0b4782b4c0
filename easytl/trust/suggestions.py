"""Which pool images to label next: uncertain, diverse, and the unknown ones apart.

``clf.suggest_labels(X_pool, n=50)`` scores every pool image in one pass of
the fitted model (calibrated probabilities, pooled backbone features and the
novelty score) and picks ``n`` of them:

* **Uncertainty** of the calibrated probabilities: the margin ``1 - (p1 - p2)``
  between the two most probable classes (default; Scheffer et al. 2001), or the
  entropy divided by ``log(n_classes)``. Multi-label models score each class by
  how close its probability is to that class's threshold (``1 - |p - t|``
  scaled so that a probability at 0 or 1 scores 0) and an image by its most
  uncertain class: the label that would most likely flip.
* **Diversity**: the ``3 n`` most uncertain images (near-duplicates of a more
  uncertain one, feature cosine ≥ 0.998 as in the error report, skipped) are the
  candidates, and a farthest-first traversal of their unit-length pooled
  features (k-center greedy; Sener & Savarese, ICLR 2018) picks ``n`` of them,
  starting from the most uncertain, and they are returned in that order: each the
  candidate farthest from those before it, so any first ``k`` are a spread-out
  batch (``uncertainty_ranks`` gives each one's rank by uncertainty alone).
  Uncertain images from one corner of feature space are suggested once, not
  fifty times, and two near-duplicates
  are suggested together only when the pool holds fewer than ``n`` distinct
  images.
* **Unknown** images (novelty score above ``unknown_threshold_``) are left out
  of the suggestions and listed apart, most novel first: they may belong to a
  class the model has never seen, and labelling them is a different decision.

Why this combination (``benchmarks/active_learning.py``, README "Which images
to label next"): on digits (Lite0 features, 20 labels a round, 5 rounds, 5
seeds) the mean test accuracy over the five rounds was 0.709 for random picks,
0.720 for uncertainty alone, 0.716 with 10 n candidates, 0.725 for
uncertainty × distance over the whole pool, and 0.738-0.740 with 2, 3 or 4 n
candidates. A tight candidate list keeps the picks uncertain; the traversal
keeps them apart. On 3 other seeds both uncertainty-driven strategies saved
about 30 of random's 120 labels; on a pool without near-duplicates the
diversity step is no consistent gain over uncertainty alone, and on a pool of
near-copies it is what keeps the batch from being one image n times.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from .report import DUPLICATE_COSINE
from .statistics import unit_length

UNCERTAINTY = ("margin", "entropy")
# Candidates per suggestion: on digits (5 seeds, 20 labels a round) 2, 3 and 4 did alike
# (mean accuracy over five rounds 0.738-0.740) and 10 worse (0.716); see the module's note.
CANDIDATES_PER_PICK = 3


@dataclass
class LabelSuggestions:
    """What :meth:`TransferClassifier.suggest_labels` returns.

    Attributes
    ----------
    indices : ndarray of int
        Positions in the pool of the images to label, in the order the farthest-first
        traversal picked them: the first is the most uncertain, and each next one the
        candidate farthest from those before it, so the first ``k`` are a spread-out batch
        of ``k`` (not the ``k`` most uncertain). With ``diversity=False``: most uncertain
        first.
    scores : ndarray of float
        Their uncertainty in [0, 1] (1: the model cannot decide).
    uncertainty_ranks : ndarray of int
        Where each stands by uncertainty alone among the pool images that can be suggested
        (1: the most uncertain; unknown images are not ranked; ties in pool order).
    guesses : ndarray or list
        The model's prediction for each (multi-label: a tuple of labels).
    probabilities : ndarray of float
        The calibrated probability of the guess (multi-label: of the class closest to its
        threshold).
    paths : list of str or None
        Their file paths, when the pool was files, a folder or a table.
    unknown : ndarray of int
        Pool positions the novelty score calls unknown (possibly a new class), most novel
        first; never among ``indices``.
    unknown_scores : ndarray of float
        Their novelty scores.
    unknown_paths : list of str or None
    unknown_guesses : ndarray or list
        The class each unknown image would have been given.
    unknown_probabilities : ndarray of float
        Its calibrated probability.
    diversity : bool
        Whether the diversity step picked (and ordered) ``indices``.
    """

    indices: np.ndarray
    scores: np.ndarray
    guesses: object
    probabilities: np.ndarray
    paths: list | None
    unknown: np.ndarray
    unknown_scores: np.ndarray
    unknown_paths: list | None
    unknown_guesses: object = field(default=None)
    unknown_probabilities: np.ndarray = field(default=None)
    uncertainty_ranks: np.ndarray = field(default=None)
    diversity: bool = True  # how ``indices`` were ordered: farthest-first, or by uncertainty

    def __len__(self) -> int:
        return len(self.indices)


def uncertainty_scores(proba: np.ndarray, kind: str = "margin", multi_label: bool = False,
                       thresholds=None) -> np.ndarray:
    """Uncertainty in [0, 1] of each row of calibrated probabilities (see the module)."""
    proba = np.clip(np.asarray(proba, dtype=np.float64), 0.0, 1.0)
    if multi_label:
        t = np.full(proba.shape[1], 0.5) if thresholds is None else np.asarray(thresholds, float)
        if kind == "margin":
            # distance to the threshold, scaled by the room on that side of it
            room = np.where(proba >= t, 1.0 - t, t)
            per_class = 1.0 - np.abs(proba - t) / np.maximum(room, 1e-12)
        else:
            p = np.clip(proba, 1e-12, 1 - 1e-12)
            per_class = -(p * np.log2(p) + (1 - p) * np.log2(1 - p))
        return np.clip(per_class.max(axis=1), 0.0, 1.0)
    if proba.shape[1] < 2:
        return np.zeros(len(proba))
    if kind == "margin":
        top = np.sort(proba, axis=1)[:, -2:]
        return np.clip(1.0 - (top[:, 1] - top[:, 0]), 0.0, 1.0)
    p = np.clip(proba, 1e-12, 1.0)
    return np.clip(-(p * np.log(p)).sum(axis=1) / np.log(proba.shape[1]), 0.0, 1.0)


def diverse_picks(features: np.ndarray, uncertainty: np.ndarray, n: int,
                  candidates_per_pick: int = CANDIDATES_PER_PICK) -> np.ndarray:
    """``n`` row positions: farthest-first among the most uncertain distinct rows.

    Candidates are the ``candidates_per_pick × n`` most uncertain rows, skipping any whose
    unit-length features are a near-duplicate (cosine ≥ 0.998) of a more uncertain candidate;
    the picks are a farthest-first traversal of them (k-center greedy), starting from the
    most uncertain. Near-duplicates are picked only when the pool holds fewer than ``n``
    distinct images.
    """
    f = unit_length(np.asarray(features, dtype=np.float32))
    order = np.argsort(-np.asarray(uncertainty, dtype=np.float64), kind="stable")
    n = min(n, len(f))
    wanted = min(len(f), candidates_per_pick * n)
    kept = []
    for i in order:
        if len(kept) == wanted:
            break
        if not kept or float((f[kept] @ f[i]).max()) < DUPLICATE_COSINE:
            kept.append(int(i))
    if len(kept) < n:  # fewer distinct images than asked for: the most uncertain of the rest
        taken = set(kept)
        kept += [int(i) for i in order if int(i) not in taken][:n - len(kept)]
    candidates = f[kept]
    nearest = np.full(len(kept), np.inf)
    picks = []
    for _ in range(n):
        best = 0 if not picks else int(np.argmax(nearest))
        picks.append(best)
        distance = np.sqrt(np.maximum(2.0 - 2.0 * (candidates @ candidates[best]).astype(np.float64), 0))
        nearest = np.minimum(nearest, distance)
        nearest[picks] = -np.inf
    return np.asarray(kept, dtype=np.int64)[picks]


def pool_paths(X):
    """The file paths of a pool given as a folder, a list of paths or a table's paths; else None."""
    import os
    from pathlib import Path
    if isinstance(X, (str, os.PathLike)) and Path(X).is_dir():
        from ..data.sources import read_class_folders
        return [str(p) for p in read_class_folders(X)[0]]
    if isinstance(X, (list, tuple)) and X and all(isinstance(p, (str, os.PathLike)) for p in X):
        return [str(p) for p in X]
    items, positions = getattr(X, "items", None), getattr(X, "positions", None)
    if items is not None and positions is not None and all(
            isinstance(items[p], (str, os.PathLike)) for p in positions):  # files decoded already
        return [str(items[p]) for p in positions]
    return None


def suggest(clf, X_pool, n: int = 50, uncertainty: str = "margin", diversity: bool = True,
            root=None) -> LabelSuggestions:
    """:meth:`TransferClassifier.suggest_labels` (see there)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer (how many images to suggest), got {n!r}.")
    if uncertainty not in UNCERTAINTY:
        raise ValueError(f"uncertainty must be one of {UNCERTAINTY}, got {uncertainty!r}.")
    X_pool, _ = clf._from_table(X_pool, root=root)
    paths = pool_paths(X_pool)
    if paths is not None and not hasattr(X_pool, "positions"):
        X_pool = paths  # a folder is read once, here, in a known order (a source is kept as it is)
    proba, features, novelty = _pool_pass(clf, X_pool)
    if n > len(proba):
        raise ValueError(f"n={n} but the pool holds {len(proba)} images: ask for at most "
                         f"{len(proba)} (every pool image), or add images to the pool.")
    multi = bool(getattr(clf, "multi_label_", False))
    thresholds = getattr(clf, "thresholds_", None)
    scores = uncertainty_scores(proba, uncertainty, multi, thresholds)
    threshold = getattr(clf, "unknown_threshold_", None)
    is_unknown = (np.zeros(len(proba), bool) if novelty is None or threshold is None
                  else novelty > threshold)
    known = np.flatnonzero(~is_unknown)
    if len(known) < n:
        warnings.warn(f"only {len(known)} of the {len(proba)} pool images are like the training "
                      f"images; the other {int(is_unknown.sum())} are listed apart as unknown "
                      f"(LabelSuggestions.unknown), so {len(known)} are suggested, not {n}.",
                      stacklevel=3)
    by_uncertainty = known[np.argsort(-scores[known], kind="stable")]
    ranks = np.zeros(len(proba), np.int64)
    ranks[by_uncertainty] = np.arange(1, len(by_uncertainty) + 1)
    if diversity:
        chosen = known[diverse_picks(features[known], scores[known], n)]
    else:
        chosen = by_uncertainty[:n]
    unknown = np.flatnonzero(is_unknown)
    if len(unknown):
        unknown = unknown[np.argsort(-novelty[unknown], kind="stable")]
    guesses = clf._decode(proba)
    if isinstance(guesses, np.ndarray) and guesses.ndim == 2:  # multi-label indicator rows: names
        guesses = [tuple(clf.classes_[np.flatnonzero(row)].tolist()) for row in guesses]

    def take(values, positions):
        return [values[i] for i in positions] if isinstance(values, list) else values[positions]

    if multi:
        t = np.full(proba.shape[1], 0.5) if thresholds is None else np.asarray(thresholds)
        shown = proba[np.arange(len(proba)), np.argmin(np.abs(proba - t), axis=1)]
    else:
        shown = proba.max(axis=1)
    return LabelSuggestions(
        indices=chosen, scores=scores[chosen], guesses=take(guesses, chosen),
        probabilities=shown[chosen], paths=None if paths is None else [paths[i] for i in chosen],
        unknown=unknown, unknown_scores=(np.zeros(0) if novelty is None else novelty[unknown]),
        unknown_paths=None if paths is None else [paths[i] for i in unknown],
        unknown_guesses=take(guesses, unknown), unknown_probabilities=shown[unknown],
        uncertainty_ranks=ranks[chosen], diversity=bool(diversity))


def _pool_pass(clf, X):
    """Calibrated probabilities, pooled features and novelty scores (or None) in one pass."""
    with_novelty = getattr(clf, "novelty_", None) is not None

    def outputs(model, x):
        features = model.features(x)
        proba = clf._task.proba(model.head(features), clf.temperature_)
        parts = [proba.float(), features.float()]
        if with_novelty:
            parts.append(clf._novelty(features).float())
        return torch.cat(parts, dim=1)
    out = clf._run(X, outputs, desc="scoring the pool")
    k = len(clf.classes_)
    proba = out[:, :k]
    features = out[:, k:k + clf.n_features_]
    novelty = out[:, -1].astype(np.float64) if with_novelty else None
    return proba, features, novelty


def write_html(suggestions: LabelSuggestions, X_pool, path, title: str = "Images to label next"):
    """One self-contained page to label from: a thumbnail, the file name, the model's guess and
    its probability for each suggestion, then the unknown images. Returns the path written."""
    import html
    from pathlib import Path

    from ..io import atomic_file, check_writable
    from .report import _STYLE, _img, _png
    from .thumbnails import Thumbnails
    check_writable(path)
    if suggestions.paths is not None:  # files: only the shown ones are read
        shown = list(suggestions.paths) + list(suggestions.unknown_paths)
        thumbs = Thumbnails(None, shown) if shown else None
        at = {int(i): k for k, i in enumerate(np.r_[suggestions.indices, suggestions.unknown])}
    else:
        thumbs, at = Thumbnails(None, X_pool), None

    def card(rank, index, file, guess, probability, note):
        name = f"#{index}" if file is None else Path(file).name
        image = thumbs.image(int(index) if at is None else at[int(index)])
        return (f'<div class="card">{_img(_png(image), name)}<br><b>{rank}. '
                f"{html.escape(name)}</b><br>guess: {html.escape(_label_text(guess))} "
                f"({probability:.2f})<br>{note}</div>")

    def gallery(cards):
        return '<div class="gallery">' + "".join(cards) + "</div>" if cards else "<p>None.</p>"

    files = suggestions.paths or [None] * len(suggestions)
    ranks = (suggestions.uncertainty_ranks if suggestions.uncertainty_ranks is not None
             else ["?"] * len(suggestions))
    unknown_files = suggestions.unknown_paths or [None] * len(suggestions.unknown)
    parts = [f"<h1>{html.escape(title)}: {len(suggestions)} suggested</h1>",
             f'<p class="note">{_ORDER_NOTE if suggestions.diversity else _UNCERTAIN_FIRST}</p>',
             gallery([card(r + 1, i, f, g, p, f"uncertainty {s:.2f} (uncertainty rank {k})")
                      for r, (i, f, g, p, s, k) in enumerate(zip(
                          suggestions.indices, files, suggestions.guesses,
                          suggestions.probabilities, suggestions.scores, ranks))]),
             f"<h2>Unknown: {len(suggestions.unknown)} images unlike the training images</h2>",
             '<p class="note">the novelty score is above the unknown threshold: a class the model '
             "has never seen, or a kind of photo it was not trained on; most novel first</p>",
             gallery([card(r + 1, i, f, g, p, f"novelty {s:.2f}") for r, (i, f, g, p, s) in
                      enumerate(zip(suggestions.unknown, unknown_files, suggestions.unknown_guesses,
                                    suggestions.unknown_probabilities, suggestions.unknown_scores))])]
    page = (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>"
            f"{html.escape(title)}</title><style>{_STYLE}</style></head><body>{''.join(parts)}"
            "</body></html>")
    with atomic_file(path) as tmp:
        Path(tmp).write_text(page, encoding="utf-8")
    return Path(path)


# What the page says of the order (the CSV's rows come in the same order, numbered by `pick`)
_ORDER_NOTE = ("in the order they were picked: the first is the image the model is least sure of, "
               "and each next one the uncertain image farthest from those before it, so the "
               "first k are a spread-out batch of k, not the k most uncertain (uncertainty rank "
               "1: the most uncertain in the pool; uncertainty 1: the model cannot decide)")
_UNCERTAIN_FIRST = ("most uncertain first (diversity=False; uncertainty 1: the model cannot "
                    "decide)")


def _label_text(guess) -> str:
    """A guess as text: a label, or a multi-label tuple joined with ';'."""
    if isinstance(guess, (tuple, list)):
        return ";".join(str(g) for g in guess)
    return str(guess.item() if hasattr(guess, "item") else guess)
