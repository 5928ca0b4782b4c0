"""The optimizer of a phase: AdamW (default), SGD with momentum, or your own factory."""

from __future__ import annotations

import torch

OPTIMIZERS = ("adamw", "sgd")
SGD_MOMENTUM = 0.9


def make_optimizer(choice, head_params, backbone_groups, head_lr: float, backbone_lr: float,
                   weight_decay: float, layer_lr_decay: float | None = None) -> torch.optim.Optimizer:
    """An optimizer over parameter groups: the head at ``head_lr``, then the trainable
    backbone parameters (if any) at ``backbone_lr``.

    ``backbone_groups`` lists the trainable backbone parameters per layer group,
    lowest first. Without ``layer_lr_decay`` (None or 1) they form one group;
    with it, one group each, the top at ``backbone_lr`` and each lower one at
    ``layer_lr_decay`` times the LR of the one above.

    ``choice`` is ``"adamw"``, ``"sgd"`` (Nesterov-free momentum 0.9) or a callable
    ``(param_groups) -> Optimizer`` that receives those groups, each with its ``lr``.
    """
    groups = [{"params": list(head_params), "lr": head_lr}]
    backbone_groups = [list(params) for params in backbone_groups]
    if layer_lr_decay is None or layer_lr_decay == 1:
        flat = [p for params in backbone_groups for p in params]
        if flat:
            groups.append({"params": flat, "lr": backbone_lr})
    else:
        for depth, params in enumerate(reversed(backbone_groups)):  # the top group first
            if params:
                groups.append({"params": params, "lr": backbone_lr * layer_lr_decay ** depth})
    if choice == "adamw":
        return torch.optim.AdamW(groups, weight_decay=weight_decay)
    if choice == "sgd":
        return torch.optim.SGD(groups, lr=head_lr, momentum=SGD_MOMENTUM, weight_decay=weight_decay)
    if callable(choice):
        optimizer = choice(groups)
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"the optimizer callable returned {type(optimizer).__name__}, not a "
                            "torch.optim.Optimizer.")
        return optimizer
    raise ValueError(f"optimizer must be one of {OPTIMIZERS} or a callable (param_groups) -> "
                     f"Optimizer, got {choice!r}.")
