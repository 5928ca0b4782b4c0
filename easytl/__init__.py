"""easytl: transfer learning for custom image classification in one scikit-learn call."""

__version__ = "0.1.0"

from .backbones import (Backbone, WeightsUnavailableError, available_backbones,  # noqa: E402
                        create_backbone, list_backbones)
from .classifier import TransferClassifier  # noqa: E402
from .datasets import make_textures  # noqa: E402
from .features import FeatureExtractor  # noqa: E402
from .heads import LinearHead, MLPHead  # noqa: E402
from .io import ModelFileError  # noqa: E402
from .plots import plot_backbones, plot_confusion, plot_history, plot_tsne  # noqa: E402
from .schedules import FeatureExtraction, FineTune, Phase, ProgressiveUnfreezing, Schedule  # noqa: E402
from .selection import compare_backbones  # noqa: E402
from .training import Callback, TransferModel  # noqa: E402

__all__ = [
    "Backbone", "Callback", "FeatureExtraction", "FeatureExtractor", "FineTune", "LinearHead", "MLPHead",
    "ModelFileError", "Phase", "ProgressiveUnfreezing", "Schedule", "TransferClassifier",
    "TransferModel", "WeightsUnavailableError", "available_backbones", "create_backbone",
    "compare_backbones", "list_backbones", "make_textures", "plot_backbones", "plot_confusion",
    "plot_history", "plot_tsne",
]
