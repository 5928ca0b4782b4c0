"""The public home of :func:`export_model` (DESIGN.md): ``from easytl.export import export_model``.

The code lives in :mod:`easytl.deploy.export`; this module only re-exports its public names.
"""

from .deploy.export import EXPORT_FORMATS, EXPORT_VERSION, ImagePredictor, export_model, predictor_for

__all__ = ["EXPORT_FORMATS", "EXPORT_VERSION", "ImagePredictor", "export_model", "predictor_for"]
