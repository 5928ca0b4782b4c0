"""Synthetic data sets: the notebook's textures, their mosaics, and an inspection proxy."""

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


# --------------------------------------------------------------------------- inspection proxy

# Severity classes, in order, and their default shares: those of a public solar-cell inspection
# set (functional / three defect probabilities), whose third class is the rare one (~4%).
INSPECTION_CLASSES = ("good", "minor", "moderate", "severe")
INSPECTION_FRACTIONS = (0.57, 0.12, 0.04, 0.27)
# Gray-able photos and textures that ship inside scikit-image (no download), split by photo:
# a tile of a test photo never shares its background with a training tile.
INSPECTION_SOURCES = {
    "train": ("brick", "grass", "camera", "coins", "cell", "astronaut", "rocket",
              "immunohistochemistry", "chelsea", "page", "text"),
    "test": ("gravel", "moon", "clock", "coffee"),
}
# Per severity class: (defects per image, darkening, length in tile sides, line width in px).
# Each range is drawn uniformly; the classes differ in all four, with gaps in darkening.
_SEVERITY = {
    "minor": ((1, 1), (0.10, 0.16), (0.15, 0.30), (1.0, 1.5)),
    "moderate": ((1, 2), (0.20, 0.27), (0.25, 0.45), (1.2, 2.0)),
    "severe": ((2, 3), (0.32, 0.45), (0.35, 0.60), (1.5, 2.5)),
}
_DEFECT_KINDS = ("crack", "spot", "broken_line")


def _gray_source(name: str) -> np.ndarray:
    """A scikit-image sample as a float gray image in [0, 1] (cached after the first load)."""
    if name not in _SOURCE_CACHE:
        try:
            from skimage import color, data
        except ImportError as error:  # pragma: no cover - scikit-image is a dev dependency
            raise ImportError("make_inspection_images draws its backgrounds from scikit-image's "
                              "sample photos: pip install scikit-image") from error
        image = getattr(data, name)()
        if image.ndim == 3:
            image = color.rgb2gray(image[..., :3])
        image = image.astype(np.float32)
        _SOURCE_CACHE[name] = image / 255.0 if image.max() > 1.0 else image
    return _SOURCE_CACHE[name]


_SOURCE_CACHE: dict = {}


def _background(name: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """A random square crop of a source photo, resized to ``size``, turned by a multiple of 90°
    and brought to one gray level and contrast (mean 0.55, std 0.12), as inspection images are."""
    from skimage.transform import resize
    source = _gray_source(name)
    short = min(source.shape)
    side = int(rng.integers(min(short, int(0.6 * size)), short + 1))
    top = int(rng.integers(0, source.shape[0] - side + 1))
    left = int(rng.integers(0, source.shape[1] - side + 1))
    tile = resize(source[top:top + side, left:left + side], (size, size), anti_aliasing=True)
    tile = np.rot90(tile, int(rng.integers(4)))
    tile = (tile - tile.mean()) / max(float(tile.std()), 1e-3) * 0.12 + 0.55
    return tile.astype(np.float32)


def _stroke(points: np.ndarray, size: int, width: float) -> np.ndarray:
    """A soft mask in [0, 1]: the polyline through ``points`` (x, y), about ``width`` px wide."""
    from scipy.ndimage import gaussian_filter
    mask = np.zeros((size, size), dtype=np.float32)
    for (x0, y0), (x1, y1) in zip(points[:-1], points[1:]):
        steps = int(max(abs(x1 - x0), abs(y1 - y0)) * 2) + 1
        xs = np.clip(np.round(np.linspace(x0, x1, steps)).astype(int), 0, size - 1)
        ys = np.clip(np.round(np.linspace(y0, y1, steps)).astype(int), 0, size - 1)
        mask[ys, xs] = 1.0
    mask = gaussian_filter(mask, sigma=width / 2.0)
    return np.clip(mask / max(float(mask.max()), 1e-6), 0.0, 1.0)


def _defect(kind: str, size: int, length: float, width: float, rng: np.random.Generator) -> np.ndarray:
    """The soft mask of one defect: a thin curved crack, a dark spot or a dashed straight line."""
    start = rng.uniform(0.15 * size, 0.85 * size, size=2)
    n_px = length * size
    if kind == "spot":
        radius = max(2.0, 0.12 * n_px * rng.uniform(0.7, 1.3))
        rows, cols = np.mgrid[0:size, 0:size].astype(np.float32)
        aspect = rng.uniform(0.6, 1.0)
        distance = ((cols - start[0]) ** 2 + ((rows - start[1]) / aspect) ** 2) / radius ** 2
        return np.exp(-2.0 * distance).astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    if kind == "crack":  # a random walk whose direction drifts: a curved, slightly jagged line
        n_steps = max(4, int(n_px / 6))
        turns = np.cumsum(rng.normal(0.0, 0.25, size=n_steps)) + angle
        steps = np.stack([np.cos(turns), np.sin(turns)], axis=1) * (n_px / n_steps)
        return _stroke(start + np.vstack([[0, 0], np.cumsum(steps, axis=0)]), size, width)
    # broken line: a straight scratch interrupted by gaps
    direction = np.array([np.cos(angle), np.sin(angle)])
    mask = np.zeros((size, size), dtype=np.float32)
    position, end = 0.0, n_px
    while position < end:
        dash = rng.uniform(0.1, 0.25) * n_px
        a, b = start + direction * position, start + direction * min(end, position + dash)
        mask = np.maximum(mask, _stroke(np.stack([a, b]), size, width))
        position += dash + rng.uniform(0.05, 0.12) * n_px
    return mask


def make_inspection_images(n_images: int = 1000, size: int = 288, split: str | None = None,
                           class_fractions=INSPECTION_FRACTIONS, noise: float = 0.02,
                           random_state: int | None = 0, return_masks: bool = False):
    """A visible stand-in for industrial inspection data: gray tiles with thin dark defects.

    Backgrounds are square crops of gray(ed) photos and textures that ship
    with scikit-image (brick, grass, gravel, moon, ...), at a random scale and
    turned by a multiple of 90°, then brought to one gray level and contrast.
    Defective tiles get thin dark curved cracks, dark spots and dashed straight
    scratches. The label is the severity, four classes as in a public
    solar-cell inspection set: ``"good"`` (no defect), ``"minor"`` (one
    short, faint defect), ``"moderate"`` (one or two, darker and longer: the
    rare class, 4% by default) and ``"severe"`` (two or three, darker,
    longer, wider). Severity ranges do not overlap, so the task is learnable,
    but a minor crack is a few percent darker than its background, as fine as
    the background's own texture: ImageNet features alone do not separate it
    well. Defective vs good is the binary task.

    Parameters
    ----------
    n_images : int, default=1000
        Images to make; each class gets ``round(fraction * n_images)`` of them
        (at least one), the largest class absorbs the rounding.
    size : int, default=288
        Height and width in pixels (inspection images are a few hundred).
    split : None, "train" or "test", default=None
        Draw backgrounds from every source photo, or only from the training
        or the test photos of :data:`INSPECTION_SOURCES` (disjoint, so a
        train/test pair made with the two values never shares a photo).
    class_fractions : sequence of 4 floats, default=(0.57, 0.12, 0.04, 0.27)
        Shares of good, minor, moderate and severe images.
    noise : float, default=0.02
        Standard deviation of the added Gaussian noise.
    random_state : int or None, default=0
        Seed: the same arguments give the same images.
    return_masks : bool, default=False
        Also return each image's defect mask (where a defect darkens it by
        more than a tenth of its full darkening).

    Returns
    -------
    X : ndarray of shape (n_images, size, size), uint8 gray images
    y : ndarray of shape (n_images,), str severity classes
    source : ndarray of shape (n_images,), str name of each background's photo
        (to split by photo, e.g. with ``sklearn.model_selection.GroupShuffleSplit``)
    masks : ndarray of shape (n_images, size, size), bool (only with ``return_masks``)
    """
    fractions = np.asarray(class_fractions, dtype=float)
    if fractions.shape != (len(INSPECTION_CLASSES),) or (fractions < 0).any() or fractions.sum() <= 0:
        raise ValueError(f"class_fractions must be {len(INSPECTION_CLASSES)} non-negative shares "
                         f"of {INSPECTION_CLASSES}, got {class_fractions!r}.")
    if split not in (None, "train", "test"):
        raise ValueError(f"split must be None, 'train' or 'test', got {split!r}.")
    if n_images < len(INSPECTION_CLASSES) or size < 32:
        raise ValueError("make_inspection_images needs n_images >= 4 and size >= 32.")
    sources = INSPECTION_SOURCES[split] if split else sum(INSPECTION_SOURCES.values(), ())
    counts = np.maximum(1, np.round(fractions / fractions.sum() * n_images).astype(int))
    counts[np.argmax(counts)] += n_images - counts.sum()
    labels = np.repeat(np.array(INSPECTION_CLASSES), counts)
    rng = np.random.default_rng(random_state)
    labels = labels[rng.permutation(n_images)]
    names = np.array(sources)[rng.integers(len(sources), size=n_images)]
    X = np.empty((n_images, size, size), dtype=np.uint8)
    masks = np.zeros((n_images, size, size), dtype=bool) if return_masks else None
    for i, (label, name) in enumerate(zip(labels, names)):
        image = _background(str(name), size, rng)
        if label != "good":
            (low, high), darkening, length, width = _SEVERITY[str(label)]
            damage = np.zeros((size, size), dtype=np.float32)
            for _ in range(int(rng.integers(low, high + 1))):
                mask = _defect(_DEFECT_KINDS[int(rng.integers(len(_DEFECT_KINDS)))], size,
                               rng.uniform(*length), rng.uniform(*width), rng)
                damage = np.maximum(damage, mask * rng.uniform(*darkening))
            image = image - damage
            if masks is not None:
                masks[i] = damage > 0.1 * damage.max()
        image = image + rng.normal(0.0, noise, size=image.shape).astype(np.float32)
        X[i] = np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)
    return (X, labels, names, masks) if return_masks else (X, labels, names)
