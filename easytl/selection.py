"""Model selection across backbones: the notebook's "which backbone?" exercise."""

from __future__ import annotations

import os
import time
from typing import Sequence

import numpy as np
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from .backbones import WeightsUnavailableError, create_backbone
from .data import as_image_source, read_class_folders
from .features import FeatureExtractor
from .progress import progress

ROW_KEYS = ("backbone", "accuracy_mean", "accuracy_std", "params_m", "images_per_s",
            "pretrained", "skipped")


def _throughput(extractor: FeatureExtractor, X, n: int = 64) -> float:
    """Measured images/s of the frozen backbone's features on up to ``n`` of the images."""
    source, _ = as_image_source(X, None, size=extractor.image_size_)
    sample = source.__getitems__(list(range(min(n, len(source))))).permute(0, 2, 3, 1).numpy()
    extractor.transform(sample[:2])  # warm-up
    start = time.perf_counter()
    extractor.transform(sample)
    return len(sample) / (time.perf_counter() - start)


def compare_backbones(X, y=None, backbones: Sequence = ("efficientnet_lite0", "resnet18"),
                      strategy: str = "feature_extraction", cv: int = 3, weights="default",
                      image_size="auto", random_state: int = 0, verbose: int = 1,
                      **classifier_params) -> list[dict]:
    """Cross-validate each backbone on your data; one row per backbone.

    Parameters
    ----------
    X, y : images and labels, in any form :class:`TransferClassifier` takes.
    backbones : sequence of registry names, ``"timm:<name>"`` or modules
    strategy : "feature_extraction" or "fine_tune"
        A linear probe (frozen features → StandardScaler → LogisticRegression),
        or a :class:`TransferClassifier` fitted per fold with ``schedule="fine_tune"``
        and ``classifier_params``.
    cv : int, default=3
        Stratified folds.
    weights : "default" or None
        A backbone whose pretrained weights cannot be had (offline) is skipped
        with the reason in its row, not an exception.

    Returns
    -------
    list of dict with keys ``backbone``, ``accuracy_mean``, ``accuracy_std``,
    ``params_m`` (millions, the feature extractor only: the weights' ImageNet
    classifier, which ``easytl backbones`` counts, is not part of it),
    ``images_per_s`` (frozen feature throughput here),
    ``pretrained`` and ``skipped`` (None or the reason). ``pandas.DataFrame(rows)``
    makes it a table.
    """
    if strategy not in ("feature_extraction", "fine_tune"):
        raise ValueError(f"strategy must be 'feature_extraction' or 'fine_tune', got {strategy!r}.")
    if isinstance(X, (str, os.PathLike)):  # a class folder: cross-validate over its files
        paths, y = read_class_folders(X)
        X = [str(p) for p in paths]
    fixed_size = image_size if isinstance(image_size, int) else None
    source, labels = as_image_source(X, y, size=fixed_size or 224)
    if labels is None:
        raise ValueError("compare_backbones needs labels: pass y or a class folder.")
    folds = StratifiedKFold(cv, shuffle=True, random_state=random_state)
    rows = []
    bar = progress(total=len(backbones), desc="comparing backbones", unit="backbone",
                   verbose=verbose)
    for backbone in backbones:
        name = backbone if isinstance(backbone, str) else type(backbone).__name__
        bar.set_postfix_str(name)
        row = dict.fromkeys(ROW_KEYS)
        row.update(backbone=name, pretrained=weights == "default")
        try:
            module = create_backbone(backbone, weights, fixed_size)
        except WeightsUnavailableError as exc:
            row["skipped"] = str(exc).split(". ")[0]
            rows.append(row)
            bar.update()
            continue
        row["params_m"] = round(sum(p.numel() for p in module.parameters()) / 1e6, 2)
        extractor = FeatureExtractor(module, image_size=image_size, verbose=0).fit(X)
        row["images_per_s"] = round(_throughput(extractor, X), 1)
        if strategy == "feature_extraction":
            model = make_pipeline(FeatureExtractor(module, image_size=image_size, verbose=verbose),
                                  StandardScaler(),
                                  LogisticRegression(max_iter=2000))
        else:
            # Imported here: selection is a workflow on top of the estimator, not below it.
            from .classifier import TransferClassifier
            model = TransferClassifier(backbone=module, image_size=image_size, schedule="fine_tune",
                                       random_state=random_state, verbose=0, **classifier_params)
        scores = cross_val_score(clone(model), X, labels, cv=folds)
        row["accuracy_mean"], row["accuracy_std"] = float(np.mean(scores)), float(np.std(scores))
        rows.append(row)
        bar.update()
    bar.close()
    if verbose:
        print(format_rows(rows))
    return rows


def format_rows(rows: list[dict]) -> str:
    """The comparison as a plain-text table."""
    lines = [f"{'backbone':<22} {'accuracy':>15} {'params (M)*':>11} {'img/s':>8}  note"]
    for r in rows:
        if r["skipped"]:
            lines.append(f"{r['backbone']:<22} {'-':>15} {'-':>11} {'-':>8}  skipped: {r['skipped']}")
        else:
            accuracy = f"{r['accuracy_mean']:.3f} ± {r['accuracy_std']:.3f}"
            lines.append(f"{r['backbone']:<22} {accuracy:>15} {r['params_m']:>11.2f} "
                         f"{r['images_per_s']:>8.1f}  {'pretrained' if r['pretrained'] else 'random init'}")
    lines.append("* parameters of the feature extractor, without the ImageNet classifier")
    return "\n".join(lines)
