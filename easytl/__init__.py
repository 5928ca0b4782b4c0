"""easytl: transfer learning for custom image classification in one scikit-learn call.

Importing the package is cheap: the public names below are loaded from their
modules (and torch with them) on first use, so ``easytl --help`` and
``import easytl`` stay fast.
"""

from __future__ import annotations

import importlib

__version__ = "0.2.0.dev0"

# public name -> the module that defines it
_EXPORTS = {
    "Backbone": "models.backbones", "WeightsUnavailableError": "models.backbones",
    "available_backbones": "models.backbones", "create_backbone": "models.adapters",
    "list_backbones": "models.zoo",
    "TransferClassifier": "classifier",
    "make_textures": "data.synthetic", "make_texture_mosaics": "data.synthetic",
    "make_inspection_images": "data.synthetic",
    "FeatureExtractor": "features",
    "LinearHead": "models.heads", "MLPHead": "models.heads",
    "ModelFileError": "io",
    "plot_backbones": "plots", "plot_confusion": "plots", "plot_history": "plots",
    "plot_tsne": "plots", "plot_calibration": "plots", "plot_errors": "plots",
    "plot_lr_find": "plots", "LRFindResult": "training.lr_finder", "lr_find": "training.lr_finder",
    "FeatureExtraction": "training.schedules", "FineTune": "training.schedules",
    "Phase": "training.schedules", "ProgressiveUnfreezing": "training.schedules",
    "Schedule": "training.schedules",
    "compare_backbones": "selection",
    "Callback": "training.callbacks", "TransferModel": "models.network",
    "Monitor": "training.metrics", "History": "training.history",
    "FitPlan": "plan", "FitResult": "training.trainer",
    "Predictor": "deploy.predictor",
    "list_images": "prediction",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'easytl' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
