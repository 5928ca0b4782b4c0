"""The notebook's synthetic texture task, as a ready-made data set."""

from __future__ import annotations

import numpy as np

TEXTURE_CLASSES = ("stripes", "grid", "dots", "noise")


def _texture(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    image = np.zeros((size, size, 3), dtype=np.float32)
    if kind == "stripes":
        for i in range(0, size, 8):
            image[i:i + 4, :, 0] = 1.0
    elif kind == "grid":
        for i in range(0, size, 8):
            image[i:i + 2, :, 1] = 1.0
            image[:, i:i + 2, 1] = 1.0
    elif kind == "dots":
        rows, cols = np.mgrid[0:size, 0:size]
        for i in range(4, size, 10):
            for j in range(4, size, 10):
                image[(cols - j) ** 2 + (rows - i) ** 2 <= 9, 2] = 1.0
    else:  # "noise"
        image[:] = rng.uniform(0.3, 0.7, size=image.shape)
    return image


def make_textures(n_per_class: int = 100, size: int = 64, noise: float = 0.05,
                  random_state: int | None = 42):
    """Generate the notebook's four-class synthetic texture data set.

    Classes: ``"stripes"`` (red rows 4 px thick every 8 px), ``"grid"``
    (green lines 2 px thick every 8 px), ``"dots"`` (blue discs of radius 3
    every 10 px) and ``"noise"`` (uniform values in [0.3, 0.7]). Every image
    gets Gaussian noise and is clipped to [0, 1]. The task is easy: it is a
    demo and a smoke test, not a benchmark.

    Parameters
    ----------
    n_per_class : int, default=100
        Images per class.
    size : int, default=64
        Height and width in pixels.
    noise : float, default=0.05
        Standard deviation of the added Gaussian noise.
    random_state : int or None, default=42
        Seed (the notebook uses 42).

    Returns
    -------
    X : ndarray of shape (4 * n_per_class, size, size, 3), float32 in [0, 1]
    y : ndarray of shape (4 * n_per_class,), str class names
    """
    rng = np.random.default_rng(random_state)
    images, labels = [], []
    for kind in TEXTURE_CLASSES:
        for _ in range(n_per_class):
            image = _texture(kind, size, rng)
            image += rng.normal(0.0, noise, size=image.shape).astype(np.float32)
            images.append(np.clip(image, 0.0, 1.0))
            labels.append(kind)
    return np.stack(images).astype(np.float32), np.array(labels)
