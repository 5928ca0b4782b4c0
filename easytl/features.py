"""FeatureExtractor: a frozen pretrained backbone as a scikit-learn transformer."""

from __future__ import annotations

import copy
import numbers

import numpy as np
from torch import nn
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted, check_memory

from .training.adaptive import auto_image_size, median_short_side
from .models.adapters import create_backbone
from .data.sources import as_image_source
from .models.inference import run_model
from .params import feature_extractor_table, plain, validate_params

# What transform reads of the parameters (the rest is fixed by fit).
TRANSFORM_PARAMETERS = ("batch_size", "mixed_precision", "device", "num_workers", "verbose")


class FeatureExtractor(TransformerMixin, BaseEstimator):
    """Images → pooled features of a frozen pretrained backbone (BatchNorm in inference mode).

    Use it before any scikit-learn model, e.g.
    ``make_pipeline(FeatureExtractor(), StandardScaler(), LogisticRegression())``.
    Preprocessing (resize, the weights' own normalisation) comes from the backbone.

    Parameters
    ----------
    backbone : str or nn.Module, default="efficientnet_lite0"
    weights : "default", None or path, default="default"
    image_size : "auto", int or None, default="auto"
        "auto" chooses the size from the images given to :meth:`fit` with the
        same rule as :class:`TransferClassifier` (small images are upsampled by
        a bounded factor, photos keep the pretrained size; see
        :func:`easytl.training.adaptive.auto_image_size`); ``fit()`` without images, or
        None, uses the backbone's pretrained input size.
    batch_size : int, default=128
    mixed_precision : "auto", "no", "bf16" or "fp16", default="auto"
    device : "auto", "cpu" or "cuda", default="auto"
    num_workers : "auto" or int, default="auto"
        Parallel decoding of image files: "auto" uses threads, 0 none, N > 0 N DataLoader worker processes.
    memory : None, str or joblib.Memory, default=None
        Cache features on disk, keyed by these parameters and the images: a
        ``GridSearchCV`` over the downstream model then computes each fold's
        features once instead of once per candidate.
    verbose : int, default=1
        1 shows a progress bar (on stderr) when extracting takes over 2 s; 0 never.

    Attributes
    ----------
    backbone_ : Backbone
    n_features_ : int
    image_size_ : int
    """

    def __init__(self, backbone="efficientnet_lite0", weights="default", image_size="auto",
                 batch_size=128, mixed_precision="auto", device="auto", num_workers="auto", memory=None,
                 verbose=1):
        self.backbone = backbone
        self.weights = weights
        self.image_size = image_size
        self.batch_size = batch_size
        self.mixed_precision = mixed_precision
        self.device = device
        self.num_workers = num_workers
        self.memory = memory
        self.verbose = verbose

    def fit(self, X=None, y=None):
        """Load the backbone and choose the input size (nothing is learned); returns self."""
        validate_params(self.get_params(deep=False), feature_extractor_table())
        # A module is copied: fit must not change the estimator's parameters.
        spec = copy.deepcopy(self.backbone) if isinstance(self.backbone, nn.Module) else self.backbone
        given = plain(self.image_size) if isinstance(self.image_size, numbers.Integral) else None
        backbone = create_backbone(spec, self.weights, given)
        backbone.requires_grad_(False)
        self.backbone_ = backbone.eval()
        self.n_features_ = backbone.num_features
        pretrained = int(backbone.data_config["input_size"])
        if self.image_size == "auto" and X is not None and not backbone.data_config.get("fixed_input_size"):
            source, _ = as_image_source(X, None, size=pretrained)
            self.image_size_ = auto_image_size(median_short_side(source), pretrained)
        else:
            self.image_size_ = int(given or pretrained)
        return self

    def transform(self, X) -> np.ndarray:
        """Pooled features, shape (n_images, n_features_), float32."""
        check_is_fitted(self, "backbone_")
        # set_params after fit can change these: check them where they are used
        table = feature_extractor_table()
        validate_params({name: getattr(self, name) for name in TRANSFORM_PARAMETERS}, table)
        if self.memory is not None:
            # The size this fit chose: the cached features must be computed at the same one.
            params = dict(self.get_params(), memory=None, image_size=self.image_size_)
            verbose = params.pop("verbose")  # not part of the cache key: the features are the same
            return check_memory(self.memory).cache(_features, ignore=["verbose"])(params, X, verbose)
        return run_model(self.backbone_, X, lambda model, x: model.forward_features(x),
                         image_size=self.image_size_, data_config=self.backbone_.data_config,
                         batch_size=self.batch_size, num_workers=self.num_workers,
                         device=self.device, mixed_precision=self.mixed_precision,
                         verbose=self.verbose, desc="extracting features")


def _features(params: dict, X, verbose: int) -> np.ndarray:
    """Module-level so joblib can key its cache on (params, X)."""
    return FeatureExtractor(**params, verbose=verbose).fit().transform(X)
