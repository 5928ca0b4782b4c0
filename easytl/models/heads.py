"""Classification heads put on top of a backbone's pooled features."""

from __future__ import annotations

from typing import Sequence

from torch import nn


class LinearHead:
    """Factory for a single ``nn.Linear(in_features, n_classes)`` head."""

    def __call__(self, in_features: int, n_classes: int) -> nn.Module:
        return nn.Linear(in_features, n_classes)

    def spec(self) -> dict:
        return {"type": "linear"}

    def __repr__(self) -> str:
        return "LinearHead()"


class MLPHead:
    """Factory for the notebook's head: Linear → ReLU → Dropout → … → Linear.

    Parameters
    ----------
    hidden : int or sequence of int, default=128
        Width of each hidden layer.
    dropout : float, default=0.3
        Dropout after each hidden layer.
    """

    def __init__(self, hidden: int | Sequence[int] = 128, dropout: float = 0.3):
        self.hidden = (int(hidden),) if isinstance(hidden, int) else tuple(int(h) for h in hidden)
        if not self.hidden or min(self.hidden) < 1:
            raise ValueError(f"MLPHead hidden sizes must be positive integers, got {hidden!r}.")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"MLPHead dropout must be in [0, 1), got {dropout!r}.")
        self.dropout = float(dropout)

    def __call__(self, in_features: int, n_classes: int) -> nn.Module:
        layers: list[nn.Module] = []
        width = in_features
        for size in self.hidden:
            layers += [nn.Linear(width, size), nn.ReLU(inplace=True), nn.Dropout(self.dropout)]
            width = size
        layers.append(nn.Linear(width, n_classes))
        return nn.Sequential(*layers)

    def spec(self) -> dict:
        return {"type": "mlp", "hidden": list(self.hidden), "dropout": self.dropout}

    def __repr__(self) -> str:
        return f"MLPHead(hidden={list(self.hidden)}, dropout={self.dropout})"


HEADS = {"linear": LinearHead, "mlp": MLPHead}


def resolve_head(head):
    """``"linear"``, ``"mlp"``, a head factory or any callable → a callable factory."""
    if isinstance(head, str):
        if head not in HEADS:
            raise ValueError(f"unknown head {head!r}: use 'linear', 'mlp', or a callable "
                             "(in_features, n_classes) -> nn.Module.")
        return HEADS[head]()
    if callable(head):
        return head
    raise TypeError(f"head must be 'linear', 'mlp' or a callable, not {type(head).__name__}.")


def build_head(head, in_features: int, n_classes: int) -> nn.Module:
    """Build the head module and check that it is one."""
    module = resolve_head(head)(in_features, n_classes)
    if not isinstance(module, nn.Module):
        raise TypeError(f"the head callable returned {type(module).__name__}, not an nn.Module.")
    return module


def head_spec(head) -> dict | None:
    """A JSON description of the head that :func:`head_from_spec` rebuilds, or None for custom code."""
    factory = resolve_head(head)
    return factory.spec() if hasattr(factory, "spec") else None


def head_from_spec(spec: dict):
    kind = spec.get("type")
    if kind == "linear":
        return LinearHead()
    if kind == "mlp":
        return MLPHead(hidden=spec["hidden"], dropout=spec["dropout"])
    raise ValueError(f"unknown head type {kind!r} in model file.")
