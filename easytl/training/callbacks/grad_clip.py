"""Clip the gradient norm: after the backward pass, before the optimizer step."""

from __future__ import annotations

from .base import Callback


class GradientClipping(Callback):
    """``accelerator.clip_grad_norm_`` over the phase's trainable parameters (correct under
    fp16 loss scaling, where accelerate unscales first)."""

    def __init__(self, max_norm: float):
        self.max_norm = max_norm

    def on_after_backward(self, batch, logs=None) -> None:
        t = self.trainer
        params = [p for group in t.optimizer.param_groups for p in group["params"]]
        t.accelerator.clip_grad_norm_(params, self.max_norm)
