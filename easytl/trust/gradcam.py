"""Grad-CAM: where in an image the network looked for a class (Selvaraju et al., ICCV 2017).

The class score's gradient with respect to the last feature map of the
backbone (the last 4-D activation before pooling), averaged over space, weighs
that map's channels; their weighted sum, rectified and scaled to [0, 1], is
the heatmap. Computed in torch on the fitted model, in fp32.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def grad_cam(model: nn.Module, x: torch.Tensor, classes: np.ndarray) -> np.ndarray:
    """Heatmaps (n, H, W) in [0, 1] for the given class of each image of the batch ``x``."""
    seen = []

    def keep_feature_maps(module, inputs, output):
        if isinstance(output, torch.Tensor) and output.dim() == 4:
            seen.append(output)
    hooks = [m.register_forward_hook(keep_feature_maps) for m in model.backbone.modules()
             if not list(m.children())]
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            x = x.float().clone().requires_grad_(True)
            logits = model(x)
            if not seen:
                raise ValueError("Grad-CAM needs a backbone with a spatial feature map (n, C, H, W).")
            feature_map = seen[-1]  # the last one before pooling
            index = torch.as_tensor(classes, device=logits.device).long()
            score = logits.gather(1, index[:, None]).sum()
            gradient, = torch.autograd.grad(score, feature_map)
        weights = gradient.mean(dim=(2, 3), keepdim=True)
        cam = F.relu((weights * feature_map).sum(dim=1, keepdim=True))
        cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
        peak = cam.flatten(1).max(dim=1).values.clamp_min(1e-12)[:, None, None]
        return (cam / peak).detach().cpu().numpy()
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)


def overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """A uint8 (H, W, 3) image with a heatmap (H, W) in [0, 1] blended over it (jet colours)."""
    from matplotlib import colormaps
    colours = colormaps["jet"](heatmap)[..., :3] * 255.0
    return np.clip((1 - alpha) * image.astype(np.float32) + alpha * colours, 0, 255).astype(np.uint8)
