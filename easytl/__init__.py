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
    "Backbone": "backbones", "WeightsUnavailableError": "backbones",
    "available_backbones": "backbones", "create_backbone": "backbones",
    "list_backbones": "backbones",
    "TransferClassifier": "classifier",
    "make_textures": "datasets", "make_texture_mosaics": "datasets",
    "FeatureExtractor": "features",
    "LinearHead": "heads", "MLPHead": "heads",
    "ModelFileError": "io",
    "plot_backbones": "plots", "plot_confusion": "plots", "plot_history": "plots",
    "plot_tsne": "plots", "plot_calibration": "plots", "plot_errors": "plots",
    "plot_lr_find": "plots", "LRFindResult": "lr_finder",
    "FeatureExtraction": "schedules", "FineTune": "schedules", "Phase": "schedules",
    "ProgressiveUnfreezing": "schedules", "Schedule": "schedules",
    "compare_backbones": "selection",
    "Callback": "callbacks", "TransferModel": "model", "Monitor": "metrics", "History": "history",
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
