"""The optimizer of a phase: AdamW (default), SGD with momentum, or your own factory."""

from __future__ import annotations

import torch

OPTIMIZERS = ("adamw", "sgd")
SGD_MOMENTUM = 0.9


def make_optimizer(choice, head_params, backbone_params, head_lr: float, backbone_lr: float,
                   weight_decay: float) -> torch.optim.Optimizer:
    """An optimizer over two parameter groups: the head at ``head_lr``, the trainable backbone
    parameters (if any) at ``backbone_lr``.

    ``choice`` is ``"adamw"``, ``"sgd"`` (Nesterov-free momentum 0.9) or a callable
    ``(param_groups) -> Optimizer`` that receives those two groups, each with its ``lr``.
    """
    groups = [{"params": list(head_params), "lr": head_lr}]
    backbone_params = list(backbone_params)
    if backbone_params:
        groups.append({"params": backbone_params, "lr": backbone_lr})
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
