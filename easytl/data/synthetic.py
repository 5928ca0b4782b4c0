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


def make_texture_mosaics(n_images: int = 400, size: int = 64, max_classes: int = 3,
                         noise: float = 0.05, random_state: int | None = 0):
    """A multi-label task built from the synthetic textures: 2x2 mosaics.

    Each image is four tiles; the tiles show 1 to ``max_classes`` different
    textures (how many varies from image to image, each chosen texture in at
    least one tile), and the image's labels are the textures it contains.

    Returns
    -------
    X : ndarray (n_images, size, size, 3), float32 in [0, 1]
    y : list of tuples of class names (sorted), e.g. ``("dots", "stripes")``
    """
    if not 1 <= max_classes <= len(TEXTURE_CLASSES):
        raise ValueError(f"max_classes must be between 1 and {len(TEXTURE_CLASSES)}.")
    rng = np.random.default_rng(random_state)
    half = size // 2
    images, labels = [], []
    for _ in range(n_images):
        k = int(rng.integers(1, max_classes + 1))
        chosen = [str(c) for c in rng.choice(TEXTURE_CLASSES, size=k, replace=False)]
        tiles = chosen + [str(c) for c in rng.choice(chosen, size=4 - k)]  # every chosen one shows
        rng.shuffle(tiles)
        image = np.zeros((2 * half, 2 * half, 3), dtype=np.float32)
        for position, kind in enumerate(tiles):
            row, col = divmod(position, 2)
            image[row * half:(row + 1) * half, col * half:(col + 1) * half] = _texture(kind, half, rng)
        image += rng.normal(0.0, noise, size=image.shape).astype(np.float32)
        images.append(np.clip(image, 0.0, 1.0))
        labels.append(tuple(sorted(chosen)))
    return np.stack(images).astype(np.float32), labels
