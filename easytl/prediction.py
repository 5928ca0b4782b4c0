"""What a fitted classifier answers: labels, probabilities, novelty, features, scores, reports.

A mixin for :class:`~easytl.classifier.TransferClassifier`, which provides the
fitted attributes (``model_``, ``classes_``, ``temperature_``, ...) it reads.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted

from .data.sources import ImageSource, as_image_source
from .models.inference import run_model
from .data.hf import is_hf_dataset, read_hf
from .data.augment import trains_on_mirror_images
from .data.labels import decode, encode_like, mark_unknown
from .data.tables import is_table, read_table
from .params import PREDICT_PARAMETERS, validate_arguments, validate_params
from .training.tasks import task_for
from .trust.statistics import unit_length


class PredictionMixin:
    """Inference methods of a fitted :class:`~easytl.classifier.TransferClassifier`."""

    def _from_table(self, X, y=None, root=None):
        """A table ``X`` → its image paths and labels: ``y`` when given (one per row; a string
        names the label column), else the table's label column; read with the options ``fit``
        was given (path column, delimiter; ``root`` unless given here). A Hugging Face
        dataset stays as it is, with its labels (:mod:`easytl.data.hf`)."""
        if X is not None and is_hf_dataset(X):
            labels = read_hf(X, y)[1] if y is None or isinstance(y, str) else y
            return X, labels
        if X is None or not is_table(X):
            return X, y
        options = getattr(self, "_table_options", {})
        paths, labels, _ = read_table(X, y, options.get("root") if root is None else root,
                                      options.get("path_column"), options.get("label_delim"))
        return [str(p) for p in paths], labels

    def _run(self, X, output, desc: str = "predicting", **kwargs) -> np.ndarray:
        check_is_fitted(self, "model_")
        # set_params after fit can change these: check them where they are used
        validate_params({name: getattr(self, name) for name in PREDICT_PARAMETERS})
        X, _ = self._from_table(X)
        X = _checked_sizes(X, self.image_size_)
        return run_model(self.model_, X, output, image_size=self.image_size_,
                         data_config=self.model_.backbone.data_config,
                         batch_size=self.predict_batch_size, num_workers=self.num_workers,
                         device=self.device, mixed_precision=self.mixed_precision,
                         verbose=self.verbose, desc=desc, **kwargs)

    def _training_recipe(self):
        """The augmentation the fit trained with, by name ("custom" for a callable); model
        files from before easytl recorded it: the ``augment`` parameter."""
        plan = getattr(self, "plan_", None) or {}
        return plan["augment"] if "augment" in plan else self.augment

    @property
    def _task(self):
        return task_for(getattr(self, "multi_label_", False))

    def _proba(self, model, x):
        return self._task.proba(model(x), self.temperature_)

    def predict_proba(self, X, *, root=None) -> np.ndarray:
        """Class probabilities, shape (n_images, n_classes), columns in ``classes_`` order;
        calibrated by ``temperature_`` (temperature scaling on the validation split).

        Single-label rows sum to 1; multi-label columns are independent per-class
        probabilities (sigmoids). ``root``: the folder a table's paths are relative to
        (default: fit's ``root``, else the CSV's folder or the working directory).

        Rows follow ``X``: for a folder, the sorted files :func:`easytl.list_images`
        returns (row ``i`` is ``list_images(X)[i]``)."""
        return self._run(self._from_table(X, root=root)[0], self._proba)

    def novelty_score(self, X) -> np.ndarray:
        """How unlike the training images each image is (higher: less alike), shape (n_images,).

        The Mahalanobis distance of its pooled backbone features to the nearest
        class mean of the training features (shared covariance); above
        ``unknown_threshold_`` an image counts as unknown.
        """
        check_is_fitted(self, "model_")
        self._require_novelty()
        return self._run(X, lambda model, x: self._novelty(model.features(x)),
                         desc="scoring novelty")[:, 0]

    def _require_novelty(self) -> None:
        if getattr(self, "novelty_", None) is None:
            raise ValueError("this model has no novelty statistics (it was saved by an easytl "
                             "before 0.2, or fit was interrupted): fit it again to use "
                             "novelty_score or reject_unknown.")

    def _novelty(self, features: torch.Tensor) -> torch.Tensor:
        """Novelty scores of pooled features, on the device: min over classes of (f-m)' P (f-m)."""
        features = features.double()
        if self.novelty_.normalize:  # as NoveltyModel.score: unit-length features
            features = unit_length(features)
        means = torch.as_tensor(self.novelty_.means, dtype=torch.float64, device=features.device)
        precision = torch.as_tensor(self.novelty_.precision, dtype=torch.float64,
                                    device=features.device)
        projected = features @ precision
        distance = ((projected * features).sum(1, keepdim=True) - 2 * projected @ means.T
                    + ((means @ precision) * means).sum(1))
        return distance.min(dim=1, keepdim=True).values.clamp_min(0).sqrt().float()

    def predict_tta(self, X, n_augment: int = 5, return_proba: bool = False) -> np.ndarray:
        """Predict with test-time augmentation: average probabilities over views.

        The views are the plain image, its mirror image, then ``n_augment - 2``
        mild random views (large crops, flips, ±5% brightness/contrast), drawn
        from ``random_state`` so repeated calls agree. A model trained without
        mirror images (``augment="no_mirror"``, given or chosen by the symmetry
        test; ``augment=None``; or the user's own augmentation, of which nothing
        is known) gets no mirror images here either: the plain image, then
        ``n_augment - 1`` random views without flips.
        ``n_augment=1`` is :meth:`predict`.

        Returns
        -------
        labels (n_images,), or probabilities (n_images, n_classes) with ``return_proba``.
        """
        validate_arguments(n_augment=n_augment, return_proba=return_proba)
        generator = torch.Generator().manual_seed(self.random_state or 0)
        proba = self._run(X, self._proba, n_views=int(n_augment), generator=generator,
                          mirror_views=trains_on_mirror_images(self._training_recipe()),
                          desc=f"predicting ({n_augment} TTA views)")
        return proba if return_proba else self._decode(proba)

    def report(self, X, y=None, n_augment: int = 1, html=None, X_train=None, y_train=None, *,
               root=None) -> dict:
        """Held-out evaluation: accuracy, per-class report, confusion matrix, calibration.

        ``n_augment > 1`` evaluates :meth:`predict_tta` instead of :meth:`predict`.
        ``html="report.html"`` also writes the self-contained error report
        (:mod:`easytl.trust.report`); give the training images as ``X_train`` (and
        ``y_train``) to look for near-duplicates between the two sets there (files
        ``fit`` left out with ``on_bad_image="skip"`` are left out there too).
        ``root``: the folder the paths of a table ``X`` / ``X_train`` are relative to.

        Returns
        -------
        dict with ``accuracy`` (float), ``balanced_accuracy`` (the mean of the
        per-class recalls: a rare class weighs as much as a common one),
        ``recall`` (per class present in ``y``), ``report`` (text), ``confusion_matrix``
        (rows: true labels, columns: predictions, both in ``labels`` order),
        ``labels``, and ``calibration``: ``temperature``, expected calibration
        error (15 bins) and log-loss before and after temperature scaling
        (``ece_before``, ``ece_after``, ``log_loss_before``, ``log_loss_after``).
        ``unknown`` says what ``reject_unknown`` rests on: ``threshold``, ``rate``
        (``unknown_rate``) and ``n_images``, the number of held-out novelty scores
        the threshold is the conformal quantile of.
        A multi-label model reports ``f1_samples`` (also as ``accuracy``),
        ``f1_micro``, ``f1_macro``, ``mean_average_precision``, the per-class
        ``report`` and the binary ``log_loss`` before and after calibration.
        """
        from .trust.report import evaluation, write_html_report
        validate_arguments(n_augment=n_augment)
        if html is not None and self.multi_label_:  # before any image is read
            raise ValueError("the HTML report covers single-label models; for a multi-label "
                             "one, report() returns per-class figures and mean average precision.")
        X, y = self._from_table(X, y, root)
        X_train, y_train = self._from_table(X_train, y_train, root)
        y = self._labels_for(X, y)
        result, proba = evaluation(self, X, y, n_augment)
        if html is not None:
            X_train, y_train = self._without_skipped(X_train, y_train)
            result["html"] = write_html_report(self, X, y, proba, html, X_train=X_train,
                                               y_train=y_train)
        return result

    def predict(self, X, reject_unknown: bool = False, unknown_label="unknown", *, root=None):
        """Predicted labels, in the form given to ``fit``.

        Single-label: an array of labels from ``classes_``. Multi-label: every
        class whose probability reaches its ``thresholds_`` entry, as an
        indicator matrix or a list of label tuples (whichever ``y`` was).

        With ``reject_unknown=True`` an image whose :meth:`novelty_score` is above
        ``unknown_threshold_`` gets ``unknown_label`` instead (an object array;
        multi-label: a list of tuples, ``(unknown_label,)`` for those images).
        ``root``: the folder a table's paths are relative to.

        Rows follow ``X``: arrays, lists and datasets in their order, a table in its
        rows' order, and a folder in the sorted order of its files, which
        :func:`easytl.list_images` returns: ``dict(zip(easytl.list_images(folder),
        clf.predict(folder)))`` pairs each file with its label. (``predict`` returns
        only labels, as scikit-learn's do, and keeps no record of what it read.)
        """
        validate_arguments(reject_unknown=reject_unknown)
        X, _ = self._from_table(X, root=root)
        if not reject_unknown:
            proba = self.predict_proba(X)  # checks that the estimator is fitted
            return self._decode(proba)
        check_is_fitted(self, "model_")
        self._require_novelty()

        from .trust.unknown import decide, novelty_distance  # the one unknown rule (serve, Predictor)
        novelty = self.novelty_

        def proba_and_novelty(model, x):
            features = model.features(x)
            proba = self._task.proba(model.head(features), self.temperature_)
            scores = novelty_distance(features, novelty.means, novelty.precision, novelty.normalize)
            return torch.cat([proba, scores.float()[:, None]], dim=1)
        out = self._run(X, proba_and_novelty)
        decision = decide(out[:, :-1], out[:, -1], getattr(self, "thresholds_", None),
                          multi_label=self.multi_label_, unknown_threshold=self.unknown_threshold_)
        labels = decode(decision.classes, self.classes_, getattr(self, "_label_form", "labels"))
        return mark_unknown(labels, decision.unknown, self.classes_, self.multi_label_, unknown_label)

    def _decode(self, proba: np.ndarray):
        decisions = self._task.decide(proba, getattr(self, "thresholds_", None))
        return decode(decisions, self.classes_, getattr(self, "_label_form", "labels"))

    def transform(self, X) -> np.ndarray:
        """Pooled backbone features, shape (n_images, n_features_), float32."""
        return self._run(X, lambda model, x: model.features(x), desc="extracting features")

    def score(self, X, y=None, sample_weight=None, *, root=None) -> float:
        """Accuracy on ``X`` (labels from ``y``, or from class folders / a labelled Dataset);
        for a multi-label model, the sample-averaged F1 (scikit-learn's ``f1_score(...,
        average="samples")``: per image, the F1 of its predicted against its true labels).
        ``root``: the folder a table's paths are relative to."""
        from sklearn.metrics import accuracy_score, f1_score
        X, y = self._from_table(X, y, root)
        y = self._labels_for(X, y)
        if self.multi_label_:
            truth = encode_like(y, self.classes_, self._label_form, "y")
            decided = self._task.decide(self.predict_proba(X), self.thresholds_)
            return float(f1_score(truth, decided, average="samples", zero_division=1.0,
                                  sample_weight=sample_weight))
        return float(accuracy_score(y, self.predict(X), sample_weight=sample_weight))

    def _without_skipped(self, X, y):
        """Training images for the report without the files ``fit`` skipped as unreadable
        (a folder becomes its list of files and labels), with a warning that says so."""
        skipped = {os.path.abspath(path) for path, _ in getattr(self, "skipped_images_", [])}
        if X is None or not skipped:
            return X, y
        source, labels = as_image_source(X, y, name="X_train", size=self.image_size_)
        items = getattr(source, "items", None)
        if items is None or not all(isinstance(p, (str, os.PathLike)) for p in items):
            return X, y
        positions = getattr(source, "positions", range(len(items)))
        keep = [i for i, p in enumerate(positions) if os.path.abspath(items[p]) not in skipped]
        if len(keep) == len(positions):
            return X, y
        warnings.warn(f"X_train: left out {len(positions) - len(keep)} files that fit skipped as "
                      "unreadable (skipped_images_)", stacklevel=3)
        kept_labels = None if labels is None else (
            [labels[i] for i in keep] if isinstance(labels, list) else np.asarray(labels)[keep])
        if isinstance(X, ImageSource):  # decoded already (the command line): keep it so
            return source.subset(keep), kept_labels
        return [str(items[positions[i]]) for i in keep], kept_labels

    def _labels_for(self, X, y):
        """``y``, or the labels a class folder / labelled Dataset carries; all seen in fit."""
        check_is_fitted(self, "model_")
        if y is None:
            _, y = as_image_source(X, None, size=self.image_size_)
            if y is None:
                raise ValueError("labels needed: pass y, or a class folder / labelled Dataset.")
        encode_like(y, self.classes_, getattr(self, "_label_form", "labels"), "y")
        return y if getattr(self, "_label_form", "labels") == "sets" else np.asarray(y)

    def suggest_labels(self, X_pool, n: int = 50, *, uncertainty: str = "margin",
                       diversity: bool = True, root=None):
        """The ``n`` pool images worth labelling next (active learning), and the unknown ones.

        Uncertain images under the calibrated probabilities (``uncertainty``: "margin"
        between the two most probable classes, or "entropy"; multi-label: the class
        closest to its threshold), spread over the backbone's feature space: a
        farthest-first traversal of the ``3 n`` most uncertain distinct images
        (``diversity=False``: the ``n`` most uncertain, near-copies included). Images
        the novelty score calls unknown are left out and listed apart: they may be a
        class the model has never seen. See :mod:`easytl.trust.suggestions`.

        Parameters
        ----------
        X_pool : any form ``X`` takes (arrays, files, a folder, a table)
            Unlabelled images (a folder may be flat).
        n : int, default=50
            How many to suggest; more than the pool holds is an error.
        root : path, optional
            The folder a table's paths are relative to.

        Returns
        -------
        LabelSuggestions with ``indices`` (positions in ``X_pool``, in pick order: the
        first ``k`` are a spread-out batch of ``k``; ``uncertainty_ranks`` ranks them by
        uncertainty alone),
        ``scores`` (uncertainty in [0, 1]), ``guesses``, ``probabilities``, ``paths``
        (for files), and ``unknown`` / ``unknown_scores`` / ``unknown_paths``.
        """
        from .trust.suggestions import suggest
        return suggest(self, X_pool, n, uncertainty, diversity, root)


def _checked_sizes(X, image_size: int) -> ImageSource:
    """``X`` as the source ``run_model`` reads (read once: a folder is listed once), after a
    warning naming the images far smaller than the model's input size (a 1x1 thumbnail is
    predicted as confidently as a photo): sizes from headers and shapes, nothing decoded."""
    from .data.checks import warn_small_inputs
    source, _ = as_image_source(X, None, size=image_size)
    warn_small_inputs(source, image_size)
    return source


def list_images(folder) -> list:
    """The image files of a folder, in the order ``predict(folder)`` answers them.

    ``clf.predict(folder)`` returns labels only (an array, as scikit-learn's
    ``predict`` does); row ``i`` is the file ``list_images(folder)[i]``. The
    listing is the estimator's own: a folder with class sub-folders gives the
    files under each sub-folder (searched recursively; files beside the
    sub-folders are left out, with a warning), a flat folder its files
    (recursively); both sorted as Python sorts paths (part by part; on Linux
    and macOS by character code, so ``B.png`` before ``a.png``), without hidden
    files and with image extensions only (any case).

    Parameters
    ----------
    folder : str or path
        A folder (or one image file: a list of that file).

    Returns
    -------
    list of str
        The image paths, in the order of ``predict``'s rows.

    Examples
    --------
    >>> labels = dict(zip(easytl.list_images("new_photos/"), clf.predict("new_photos/")))
    """
    from .data.tables import is_table
    if not isinstance(folder, (str, os.PathLike)):
        raise TypeError(f"list_images takes a folder (or an image file), got "
                        f"{type(folder).__name__}: predict answers arrays, lists and datasets "
                        "in the order given.")
    if is_table(folder):
        raise ValueError(f"{folder} is a table: predict answers its rows in the table's order "
                         "(read them with pandas or csv); list_images takes a folder.")
    source, _ = as_image_source(folder, None, name="folder")  # the listing predict reads
    return [str(path) for path in source.items]
