"""Plots of the notebook's workflows. matplotlib is the optional ``plots`` extra.

Every function returns the matplotlib Figure and, given ``path``, saves it
(PNG unless the suffix says otherwise).
"""

from __future__ import annotations

import numpy as np


def _pyplot():
    try:
        import matplotlib
        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("easytl's plots need matplotlib: pip install 'easytl[plots]' "
                          "(or pip install matplotlib).") from None
    return plt


def _finish(fig, path):
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=100)
    return fig


def plot_history(clf, path=None):
    """Loss, accuracy (and any other monitored validation metric) and learning rate per epoch,
    with phase boundaries marked. A probe epoch (its LR is solved, not set) has no LR point."""
    plt = _pyplot()
    history = clf.history_ if hasattr(clf, "history_") else clf
    epochs = [row["epoch"] for row in history]
    fig, (loss_ax, acc_ax, lr_ax) = plt.subplots(1, 3, figsize=(13, 3.6))

    def column(key):
        return [np.nan if r.get(key) is None else r[key] for r in history]
    loss_ax.plot(epochs, column("train_loss"), "o-", label="train")
    acc_ax.plot(epochs, column("train_accuracy"), "o-", label="train")
    if any(r.get("val_loss") is not None for r in history):
        loss_ax.plot(epochs, column("val_loss"), "s-", label="validation")
        acc_ax.plot(epochs, column("val_accuracy"), "s-", label="validation")
    extra = sorted({k for r in history for k in r if k.startswith("val_")}
                   - {"val_loss", "val_accuracy"})
    for key in extra:  # a monitored metric such as val_balanced_accuracy or val_f1_macro
        acc_ax.plot(epochs, column(key), "^--", label=key)
    if extra:
        acc_ax.legend(fontsize=8)
    rates = column("lr")
    lr_ax.plot(epochs, rates, "o-")
    if np.isfinite(rates).any() and np.nanmin(rates) > 0:
        lr_ax.set_yscale("log")
    boundaries = [b["epoch"] - 0.5 for a, b in zip(history, history[1:]) if a["phase"] != b["phase"]]
    for ax, title in ((loss_ax, "loss"), (acc_ax, "accuracy"), (lr_ax, "head learning rate")):
        for x in boundaries:
            ax.axvline(x, color="gray", linestyle="--", linewidth=1)
        ax.set_title(title)
        ax.set_xlabel("epoch")
    loss_ax.legend()
    return _finish(fig, path)


def tsne_perplexity(n: int, requested: float | None = None) -> float:
    """A t-SNE perplexity that suits ``n`` points.

    Perplexity is roughly the number of neighbours each point attends to. The
    usual 30 needs a few hundred points; on fewer, every point would attend to
    most of the others and the clusters wash out. Without a request this picks
    min(30, n / 5) (at least 2); a request is lowered only where t-SNE cannot
    take it (it must stay below n / 3 so each neighbourhood is a minority).
    """
    ceiling = max(2.0, (n - 1) / 3)
    if requested is None:
        return float(min(30.0, max(2.0, n / 5)))
    return float(min(requested, ceiling))


def plot_tsne(X, y, models, titles=None, perplexity: float | None = None, random_state: int = 0,
              path=None):
    """t-SNE of pooled backbone features, one panel per model (e.g. before and after fine-tuning).

    Parameters
    ----------
    X, y : images and their labels
    models : a fitted TransferClassifier / FeatureExtractor, or a list of them
    titles : list of str, optional
    perplexity : float, optional
        None picks one that suits the number of images (:func:`tsne_perplexity`);
        a value too large for them is lowered with a warning. The title shows
        the value used.

    Each model's feature extraction and t-SNE (a minute on a few thousand images)
    are shown on stderr as they run, unless the model has ``verbose=0``.
    """
    import warnings

    from sklearn.manifold import TSNE

    from .progress import stage
    plt = _pyplot()
    models = models if isinstance(models, (list, tuple)) else [models]
    titles = titles or [type(m).__name__ for m in models]
    y = np.asarray(y)
    used = tsne_perplexity(len(y), perplexity)
    if perplexity is not None and used < perplexity:
        warnings.warn(f"t-SNE perplexity {perplexity:g} is too large for {len(y)} images; using "
                      f"{used:.3g}. With few images the picture shows little structure: plot a "
                      "few hundred images if you can.", stacklevel=2)
    fig, axes = plt.subplots(1, len(models), figsize=(5 * len(models), 4.5), squeeze=False)
    for panel, (ax, model, title) in enumerate(zip(axes[0], models, titles), start=1):
        features = model.transform(X)  # its own bar ("extracting features"), as verbose says
        where = f"panel {panel}/{len(models)}, {title}" if len(models) > 1 else title
        with stage(f"t-SNE of {len(features):,} images ({where})", getattr(model, "verbose", 1)):
            embedded = TSNE(2, perplexity=used, init="pca",
                            random_state=random_state).fit_transform(features)
        for label in np.unique(y):
            mask = y == label
            ax.scatter(embedded[mask, 0], embedded[mask, 1], s=12, label=str(label))
        ax.set_title(f"{title} (perplexity {used:.3g})")
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0][-1].legend(fontsize=8, markerscale=1.5)
    return _finish(fig, path)


def plot_backbones(rows, path=None):
    """Accuracy against parameter count, one point per compared backbone (as in the notebook)."""
    plt = _pyplot()
    rows = [r for r in rows if not r.get("skipped")]
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for r in rows:
        ax.errorbar(r["params_m"], r["accuracy_mean"], yerr=r["accuracy_std"], fmt="o", capsize=3)
        ax.annotate(r["backbone"], (r["params_m"], r["accuracy_mean"]), textcoords="offset points",
                    xytext=(5, 5), fontsize=8)
    ax.set_xlabel("parameters (millions)")
    ax.set_ylabel("cross-validated accuracy")
    ax.set_title("backbone comparison")
    return _finish(fig, path)


def plot_confusion(clf, X, y=None, path=None):
    """Confusion matrix of a fitted classifier on held-out data."""
    return plot_report(clf.report(X, y), path)


def plot_report(result: dict, path=None):
    """Draw the confusion matrix of a :meth:`TransferClassifier.report` result."""
    from sklearn.metrics import ConfusionMatrixDisplay
    plt = _pyplot()
    labels = [str(label) for label in result["labels"]]
    k, longest = len(labels), max(len(label) for label in labels)
    # Cells large enough for their counts, plus room for the longest (rotated) class name.
    side = max(4.5, 0.55 * k + 0.09 * longest + 1.8)
    fig, ax = plt.subplots(figsize=(side, side))
    rotate = k > 3 or longest > 6
    ConfusionMatrixDisplay(result["confusion_matrix"], display_labels=labels).plot(
        ax=ax, colorbar=False, xticks_rotation=45 if rotate else "horizontal",
        values_format="d", text_kw={"fontsize": 10 if k <= 15 else 7})
    if rotate:
        plt.setp(ax.get_xticklabels(), ha="right", rotation_mode="anchor")
    ax.set_title(f"accuracy {result['accuracy']:.3f}")
    return _finish(fig, path)


def plot_reliability(proba, labels, path=None, ax=None, label=None):
    """Reliability diagram: accuracy against confidence in 15 bins (the diagonal is perfect)."""
    from .trust.statistics import expected_calibration_error, reliability
    plt = _pyplot()
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(4.6, 4.2))
    bins = reliability(np.asarray(proba), np.asarray(labels))
    centres = (bins["edges"][:-1] + bins["edges"][1:]) / 2
    ece = expected_calibration_error(np.asarray(proba), np.asarray(labels))
    ax.plot([0, 1], [0, 1], color="gray", linestyle="--", linewidth=1)
    ax.plot(centres, bins["accuracy"], "o-", label=f"{label or 'model'} (ECE {ece:.3f})")
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title("reliability")
    return _finish(fig, path) if fig is not None else ax.figure


def plot_calibration(clf, X, y=None, path=None):
    """Reliability diagram of a fitted classifier before and after temperature scaling.

    A multi-label model's diagram pools every (image, class) yes/no decision."""
    import torch

    from .data.labels import encode_like
    X, y = clf._from_table(X, y)
    y = clf._labels_for(X, y)
    labels = encode_like(y, clf.classes_, getattr(clf, "_label_form", "labels"), "y")
    logits = torch.from_numpy(clf._run(X, lambda model, x: model(x).float()))
    before, after = (clf._task.proba(logits, t).numpy() for t in (1.0, clf.temperature_))
    if getattr(clf, "multi_label_", False):  # each decision as a two-class prediction (no, yes)
        labels = labels.reshape(-1)
        before, after = (np.stack([1 - p.reshape(-1), p.reshape(-1)], 1) for p in (before, after))
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    plot_reliability(before, labels, ax=ax, label="before")
    temperature = np.atleast_1d(clf.temperature_)  # one per class for a multi-label model
    shown = f"{temperature[0]:.2f}" if temperature.size == 1 else "per class"
    plot_reliability(after, labels, ax=ax, label=f"after (T = {shown})")
    return _finish(fig, path)


def plot_errors(clf, X, y=None, path=None, n: int = 12):
    """The ``n`` most confident errors: each image beside its Grad-CAM heatmap for the
    predicted class, titled true → predicted (probability)."""
    from .data.labels import encode
    from .trust.thumbnails import Thumbnails
    plt = _pyplot()
    y = clf._labels_for(X, y)
    labels = encode(np.asarray(y), clf.classes_, "y")
    proba = clf.predict_proba(X)
    predictions = proba.argmax(axis=1)
    wrong = np.flatnonzero(predictions != labels)
    wrong = wrong[np.argsort(-proba[wrong, predictions[wrong]])][:n]
    columns = 4
    rows = max(1, -(-len(wrong) // (columns // 2)))
    fig, axes = plt.subplots(rows, columns, figsize=(2.2 * columns, 2.4 * rows), squeeze=False)
    thumbs = Thumbnails(clf, X)
    cams = thumbs.heatmaps(wrong, predictions[wrong])
    for ax in axes.flat:
        ax.axis("off")
    names = [str(c) for c in clf.classes_]
    for k, (i, cam) in enumerate(zip(wrong, cams)):
        image_ax, cam_ax = axes.flat[2 * k], axes.flat[2 * k + 1]
        image_ax.imshow(thumbs.image(i))
        image_ax.set_title(f"{names[labels[i]]} → {names[predictions[i]]} "
                           f"({proba[i, predictions[i]]:.2f})", fontsize=8)
        cam_ax.imshow(cam)
        cam_ax.set_title("Grad-CAM", fontsize=8)
    if not len(wrong):
        axes.flat[0].set_title("no errors")
    return _finish(fig, path)


def plot_lr_find(result, path=None):
    """The LR range test: smoothed (and raw) training loss against the LR, log scale, with the
    suggested LR marked, if any (``result`` from ``TransferClassifier.lr_find``)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.2))
    ax.plot(result.lrs, result.raw_losses, color="0.75", linewidth=0.8, label="loss per step")
    ax.plot(result.lrs, result.losses, label="smoothed")
    if result.suggestion is not None:  # None: the loss never fell meaningfully
        ax.axvline(result.suggestion, color="C3", linestyle="--",
                   label=f"suggested lr {result.suggestion:.2g}")
    ax.set_xscale("log")
    low, high = np.min(result.losses), np.max(result.losses[: max(2, int(np.argmin(result.losses)) + 1)])
    ax.set_ylim(low - 0.1 * (high - low + 1e-9), max(high, result.losses[0]) * 1.3)
    ax.set_xlabel("learning rate (lr)")
    ax.set_ylabel("training loss")
    ax.set_title(f"LR range test ({result.phase} phase)"
                 + ("" if result.suggestion is not None else ": no suggestion"))
    ax.legend()
    return _finish(fig, path)
