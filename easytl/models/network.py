"""The network being trained, and which of its parts train in a phase.

:class:`TransferModel` is backbone + head. The freezing policy decides, per
phase, which layer groups train; the BatchNorm policy keeps frozen layers
entirely in inference mode and, by default, every BatchNorm too (the Keras
fine-tuning rule), so small or shifted data cannot wreck the pretrained
running statistics.
"""

from __future__ import annotations

import torch
from torch import nn


class TransferModel(nn.Module):
    """Backbone + head: ``forward(x) -> logits``; ``features(x) -> pooled features``."""

    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.forward_features(x)

    def forward(self, x: torch.Tensor, start: int = 0) -> torch.Tensor:
        """Logits; ``start > 0`` takes cached activations of the first ``start`` stages."""
        return self.head(self.backbone.forward_from(x, start))


def trainable_groups(model: TransferModel, spec) -> list[nn.Module]:
    """The backbone layer groups a phase trains: none, the top k, or all."""
    groups = model.backbone.layer_groups
    if spec == "all":
        return list(groups)
    return list(groups[len(groups) - spec:]) if spec else []


def freeze_for_phase(model: TransferModel, spec) -> list[list[nn.Parameter]]:
    """Set ``requires_grad`` for a phase; return the trainable backbone parameters, one list
    per layer group, from the lowest trainable group to the top."""
    model.backbone.requires_grad_(False)
    model.head.requires_grad_(True)
    groups = trainable_groups(model, spec)
    for group in groups:
        group.requires_grad_(True)
    return [[p for p in group.parameters() if p.requires_grad] for group in groups]


def set_train_mode(model: TransferModel, train_bn: bool) -> None:
    """Training mode, except: frozen layers run fully in inference mode, and BatchNorm
    runs in inference mode everywhere unless ``train_bn`` (the Keras fine-tuning rule).

    A frozen group's statistics therefore never move, and small or shifted
    data cannot wreck the pretrained running statistics.
    """
    model.train()
    for group in model.backbone.layer_groups:
        if not any(p.requires_grad for p in group.parameters()):
            group.eval()
    for module in model.backbone.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            frozen = not any(p.requires_grad for p in module.parameters(recurse=False))
            if frozen or not train_bn:
                module.eval()
