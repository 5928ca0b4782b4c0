"""Streaming inference: any X → outputs of a module, batch by batch, with bounded memory."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import nn

from .data import Preprocessor, as_image_source, batches
from .training import make_accelerator


@torch.inference_mode()
def run_model(module: nn.Module, X, output: Callable[[nn.Module, torch.Tensor], torch.Tensor], *,
              image_size: int, data_config: dict, batch_size: int = 128, num_workers: int = 0,
              device: str = "auto", mixed_precision: str = "auto", n_views: int = 1,
              generator: torch.Generator | None = None) -> np.ndarray:
    """Apply ``output(module, x)`` to preprocessed batches of ``X``; return float32 rows.

    Images are decoded, resized and normalised one batch at a time, so only
    one batch of float tensors exists at once. With ``n_views > 1`` the output
    is averaged over test-time views (:meth:`Preprocessor.test_time_views`).
    """
    source, _ = as_image_source(X, None, size=image_size)
    accelerator = make_accelerator(device, mixed_precision)
    module = module.to(accelerator.device, memory_format=torch.channels_last).eval()
    preprocess = Preprocessor(image_size, data_config["mean"], data_config["std"], augment=None)
    rows = []
    for images, _ in batches(source, None, batch_size, num_workers=num_workers):
        images = images.to(accelerator.device, non_blocking=True)
        views = (preprocess.test_time_views(images, n_views, generator) if n_views > 1
                 else [preprocess(images, train=False)])
        with accelerator.autocast():
            out = sum(output(module, x).float() for x in views) / len(views)
        rows.append(out.cpu().numpy())
    return np.concatenate(rows)
