"""Deployment: export (ONNX, TorchScript, OpenVINO; fp32 or int8), :class:`~easytl.Predictor`
to run an export as the classifier, and ``easytl serve`` (an HTTP app around a fitted model).

The "unknown" rule all of them apply is :mod:`easytl.trust.unknown`.
"""
