"""Calibration, novelty, Grad-CAM and the HTML error report."""
