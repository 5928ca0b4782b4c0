"""Depthwise convolutions in fp32 while training under CPU bf16 autocast.

On x86 CPUs oneDNN's bf16 depthwise-convolution backward is several times
slower than its fp32 one (a 5x5 depthwise layer of EfficientNet-Lite0: 152 ms
against 42 ms per batch of 32, measured here), while bf16 wins everywhere
else. So while a model trains on the CPU under bf16 autocast, its depthwise
convolutions run in fp32: a whole-network Lite0 step goes from 15 to 20 img/s.
Inference (no gradient) keeps bf16, which is faster there.
"""

from __future__ import annotations

import contextlib
from types import MethodType

import torch
from torch import nn


def _is_depthwise(module: nn.Module) -> bool:
    return (isinstance(module, nn.Conv2d) and module.groups > 1
            and module.groups == module.in_channels)


def _forward_fp32_when_training(self, x: torch.Tensor) -> torch.Tensor:
    if torch.is_grad_enabled() and x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
        with torch.autocast("cpu", enabled=False):
            return type(self).forward(self, x.float())
    return type(self).forward(self, x)


@contextlib.contextmanager
def fp32_depthwise_training(model: nn.Module, enabled: bool = True):
    """Within the block, depthwise ``Conv2d`` layers of ``model`` that run with
    gradients under CPU autocast compute in fp32; on exit they are as before.

    The layers are patched per instance (their ``forward`` attribute), so the
    module tree and ``state_dict`` keys do not change.
    """
    patched = [m for m in model.modules() if _is_depthwise(m)] if enabled else []
    for module in patched:
        module.forward = MethodType(_forward_fp32_when_training, module)
    try:
        yield len(patched)
    finally:
        for module in patched:
            del module.forward
