"""Streaming inference: any X → outputs of a module, batch by batch, with bounded memory."""

from __future__ import annotations

import warnings
from typing import Callable

import numpy as np
import torch
from torch import nn

from ..data.augment import Preprocessor
from ..data.sources import as_image_source, batches
from .folding import folded_for_inference
from ..progress import progress
from .device import inference_setup


@torch.inference_mode()
def run_model(module: nn.Module, X, output: Callable[[nn.Module, torch.Tensor], torch.Tensor], *,
              image_size: int, data_config: dict, batch_size: int = 128, num_workers: int = 0,
              device: str = "auto", mixed_precision: str = "auto", n_views: int = 1,
              generator: torch.Generator | None = None, mirror_views: bool = True,
              verbose: int = 0, desc: str = "predicting") -> np.ndarray:
    """Apply ``output(module, x)`` to preprocessed batches of ``X``; return float32 rows.

    Images are decoded, resized and normalised one batch at a time, so only
    one batch of float tensors exists at once. With ``n_views > 1`` the output
    is averaged over test-time views (:meth:`Preprocessor.test_time_views`; mirror images
    among them unless ``mirror_views=False``).

    No process-wide state changes: no ``Accelerator`` is created (that resets
    accelerate's state), the global RNG is not drawn from, so predictions from
    several threads equal those made one at a time.
    """
    source, _ = as_image_source(X, None, size=image_size)
    where, autocast = inference_setup(device, mixed_precision)
    module = module.to(where, memory_format=torch.channels_last).eval()
    preprocess = Preprocessor(image_size, data_config["mean"], data_config["std"], augment=None)

    folded = []  # BatchNorm folded into convolutions, once the first batch gives an example

    def forward(images: torch.Tensor) -> np.ndarray:
        images = images.to(where, non_blocking=True)
        views = (preprocess.test_time_views(images, n_views, generator, mirror_views) if n_views > 1
                 else [preprocess(images, train=False)])
        if not folded:
            folded.append(folded_for_inference(module, views[0][:2]).to(memory_format=torch.channels_last))
        with autocast():
            out = sum(output(folded[0], x).float() for x in views) / len(views)
        return out.cpu().numpy()

    rows = []
    chunk = batch_size
    bar = progress(total=len(source), desc=desc, verbose=verbose)  # rank 0 only (progress)
    for images, _ in batches(source, None, batch_size, num_workers=num_workers):
        outputs, chunk = in_chunks(forward, images, chunk)
        rows += outputs
        bar.update(len(images))
    bar.close()
    return np.concatenate(rows)


def in_chunks(forward: Callable, images: torch.Tensor, chunk: int) -> tuple[list, int]:
    """``forward`` over ``images`` in chunks; on out-of-memory halve the chunk and retry it.

    Returns the outputs and the chunk size that worked, for the next batch to start from.
    """
    outputs, done = [], 0
    while done < len(images):
        part = images[done:done + chunk]
        try:
            outputs.append(forward(part))
        except torch.cuda.OutOfMemoryError:
            if chunk == 1:
                raise RuntimeError("out of GPU memory even for one image at a time: predict on the "
                                   "CPU (device='cpu') or with a smaller image_size.") from None
            chunk = max(1, chunk // 2)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            warnings.warn(f"out of GPU memory: predicting in batches of {chunk}", stacklevel=3)
            continue
        done += len(part)
    return outputs, chunk
