"""On-device preprocessing: a uint8 batch becomes the model's input, augmented when training.

Resizing, augmentation and normalisation run on whole batches on the
training device, each image with its own random crop, flip and jitter.
"""

from __future__ import annotations

import functools
import inspect
import math

import torch
from torchvision.ops import roi_align

from .sources import resize

# Names of the built-in augmentation recipes ("default" is "light").
AUGMENT_PRESETS = ("default", "light", "strong", "flips", "turns", "no_mirror")
MIRRORING_PRESETS = ("default", "light", "strong", "flips", "turns")  # they flip left-right


# --------------------------------------------------------------------------- on-device preprocessing


class Preprocessor:
    """uint8 batch → resized, (optionally) augmented, normalised float batch on the device.

    Parameters
    ----------
    size : int
        Square model input size.
    mean, std : sequence of 3 floats
        Normalisation of the backbone's pretrained weights.
    augment : "default", "light", "strong", "flips", "turns", "no_mirror", None, a torchvision v2
        transform, or callable
        Training-time augmentation (:func:`augmentation` says what each does).
    """

    def __init__(self, size: int, mean, std, augment="default"):
        self.size = int(size)
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        self.augment = augment

    def __call__(self, images: torch.Tensor, train: bool = False,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        if train and self.augment is not None:
            return self.normalise(augmentation(self.augment)(images, self.size, generator))
        return self.normalise(resize(images.float().div_(255.0), self.size))

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """Float batch in [0, 1] → the backbone's normalisation, channels-last."""
        mean, std = self.mean.to(x.device), self.std.to(x.device)
        return ((x - mean) / std).contiguous(memory_format=torch.channels_last)

    def test_time_views(self, images: torch.Tensor, n_views: int,
                        generator: torch.Generator | None = None,
                        mirror: bool = True) -> list[torch.Tensor]:
        """The plain view, its mirror image, then mildly augmented views (test-time augmentation).

        Views after the first two take a large random crop (85–100% of the
        area), a random flip and ±5% brightness/contrast: far milder than the
        training augmentation, so they stay close to the test distribution.
        ``mirror=False`` (a model trained with ``"no_mirror"``: mirror images
        change its classes) leaves out the mirror image and the random flips.
        """
        x = images.float().div_(255.0)
        plain = resize(x, self.size)
        views = ([plain, plain.flip(-1)] if mirror else [plain])[:n_views]
        for _ in range(n_views - len(views)):
            views.append(default_augment(x, self.size, generator, scale=(0.85, 1.0),
                                         ratio=(0.9, 1.1), jitter=0.05, mirror=mirror))
        return [self.normalise(v) for v in views]


def trains_on_mirror_images(recipe) -> bool:
    """Whether a model trained with ``recipe`` (a preset's name, None, or "custom" for a
    callable or transform) was shown mirror images, and so tolerates them at test time.
    Only the presets that flip do; nothing is known of a user's own augmentation."""
    return recipe in MIRRORING_PRESETS


def _uniform(n: int, low: float, high: float, generator, device) -> torch.Tensor:
    return (torch.rand(n, generator=generator) * (high - low) + low).to(device)


def random_crop_boxes(n: int, height: int, width: int, scale=(0.7, 1.0), ratio=(3 / 4, 4 / 3),
                      generator=None) -> torch.Tensor:
    """Per-image random crop boxes (x1, y1, x2, y2), as in RandomResizedCrop's sampling."""
    area = height * width * (torch.rand(n, generator=generator) * (scale[1] - scale[0]) + scale[0])
    log_ratio = torch.rand(n, generator=generator) * (math.log(ratio[1]) - math.log(ratio[0])) \
        + math.log(ratio[0])
    aspect = torch.exp(log_ratio)
    crop_w = torch.sqrt(area * aspect).clamp(max=width)
    crop_h = torch.sqrt(area / aspect).clamp(max=height)
    x1 = torch.rand(n, generator=generator) * (width - crop_w)
    y1 = torch.rand(n, generator=generator) * (height - crop_h)
    return torch.stack([x1, y1, x1 + crop_w, y1 + crop_h], dim=1)


def default_augment(x: torch.Tensor, size: int, generator=None, scale=(0.7, 1.0),
                    ratio=(3 / 4, 4 / 3), jitter: float = 0.15, mirror: bool = True) -> torch.Tensor:
    """Random resized crop (scale 0.7–1), horizontal flip (``mirror``) and brightness/contrast
    jitter (±15%).

    Each image gets its own random parameters, yet the whole batch is processed
    in a few tensor ops: torchvision's v2 transforms draw one set of parameters
    per call, which would give every image of a batch the same crop.
    """
    n, _, height, width = x.shape
    boxes = random_crop_boxes(n, height, width, scale, ratio, generator).to(x.device)
    rois = torch.cat([torch.arange(n, device=x.device, dtype=x.dtype)[:, None], boxes.to(x.dtype)], 1)
    x = roi_align(x, rois, output_size=(size, size), spatial_scale=1.0, sampling_ratio=-1,
                  aligned=True)
    flip = (torch.rand(n, generator=generator) < 0.5).to(x.device)
    if mirror:
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    contrast = _uniform(n, 1 - jitter, 1 + jitter, generator, x.device)[:, None, None, None]
    brightness = _uniform(n, 1 - jitter, 1 + jitter, generator, x.device)[:, None, None, None]
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return ((x - mean) * contrast + mean).mul(brightness).clamp_(0.0, 1.0)


def square_symmetries(x: torch.Tensor, generator=None) -> torch.Tensor:
    """Each square image of the batch under one of the 8 symmetries of the square, drawn at
    random: a turn by 0, 90, 180 or 270 degrees, mirrored or not (the dihedral group D4)."""
    n = x.shape[0]
    turns = torch.randint(0, 4, (n,), generator=generator).tolist()
    mirror = (torch.rand(n, generator=generator) < 0.5).tolist()
    out = torch.empty_like(x)
    for k in range(4):
        for flip in (False, True):
            picked = [i for i in range(n) if turns[i] == k and mirror[i] == flip]
            if picked:
                part = torch.rot90(x[picked], k, dims=(-2, -1))
                out[picked] = part.flip(-1) if flip else part
    return out


def vertical_flips(x: torch.Tensor, generator=None) -> torch.Tensor:
    """Each image of the batch flipped upside down with probability 1/2."""
    flip = (torch.rand(x.shape[0], generator=generator) < 0.5).to(x.device)
    return torch.where(flip[:, None, None, None], x.flip(-2), x)


# --------------------------------------------------------------------------- recipes


def augmentation(augment):
    """The function ``(uint8 batch (n, 3, H, W), size, generator) -> float batch in [0, 1] of
    (n, 3, size, size)`` that ``augment`` names.

    - ``"default"`` / ``"light"``: :func:`default_augment` (crop, flip, ±15% jitter).
    - ``"strong"``: :func:`strong_augment` (TrivialAugmentWide, then the light
      recipe, then random erasing).
    - ``"flips"``: the light recipe, then a random vertical flip (with its horizontal
      flip: mirror images both ways and half turns), for images whose class does
      not change upside down.
    - ``"turns"``: the light recipe, then a random symmetry of the square
      (:func:`square_symmetries`: turns by 90° and mirror images), for images
      whose class does not depend on their orientation (inspection tiles,
      textures, cells, microscopy and aerial views; not digits or upright photos).
    - ``"no_mirror"``: the light recipe without its horizontal flip, for classes that
      a mirror image changes (digits, letters, left vs right).
    - a torchvision v2 transform (or any ``nn.Module``): applied to each uint8
      image on its own, then resized.
    - a callable ``f(images, generator)``: gets the uint8 batch and the fit's
      seeded generator, returns a uint8 or [0, 1] float batch (resized after).
    - a callable ``f(x)`` of one argument (easytl 0.1): gets the resized float batch.
    """
    if augment in ("default", "light"):
        return _light
    if augment == "strong":
        return strong_augment
    if augment == "flips":
        return lambda images, size, generator: vertical_flips(_light(images, size, generator),
                                                              generator)
    if augment == "turns":
        return lambda images, size, generator: square_symmetries(_light(images, size, generator),
                                                                 generator)
    if augment == "no_mirror":
        return lambda images, size, generator: _light(images, size, generator, mirror=False)
    if isinstance(augment, torch.nn.Module):
        return lambda images, size, generator: _to_float(
            per_image(augment, images, generator), size)
    if _takes_generator(augment):
        return lambda images, size, generator: _to_float(augment(images, generator), size)
    return lambda images, size, generator: augment(resize(images.float().div_(255.0), size))


def _light(images: torch.Tensor, size: int, generator, mirror: bool = True) -> torch.Tensor:
    """The light recipe on a uint8 batch (the base of "flips", "turns" and "no_mirror")."""
    return default_augment(images.float().div_(255.0), size, generator, mirror=mirror)


def _takes_generator(function) -> bool:
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in parameters)


def _to_float(batch: torch.Tensor, size: int) -> torch.Tensor:
    x = batch.float().div_(255.0) if batch.dtype == torch.uint8 else batch.float()
    return resize(x, size)


def per_image(transform, images: torch.Tensor, generator) -> torch.Tensor:
    """Apply a torchvision transform to each image of a batch with its own random draw.

    torchvision's transforms draw from torch's global random generator and, given
    a batch, draw once for all of it. Each image is transformed on its own, with
    the global generator seeded from ``generator`` for the call and put back
    afterwards, so a seeded fit repeats exactly and nothing else's randomness moves.
    """
    if generator is None:
        return torch.stack([transform(image) for image in images])
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(seed)
        return torch.stack([transform(image) for image in images])


@functools.cache
def _strong_transforms():
    from torchvision.transforms import v2
    return v2.TrivialAugmentWide(), v2.RandomErasing(p=0.25, value=0)


def strong_augment(images: torch.Tensor, size: int, generator=None) -> torch.Tensor:
    """TrivialAugmentWide (Müller & Hutter 2021: one random op of 14 at a random strength
    per image), the light recipe (crop, flip, jitter), then random erasing (p = 0.25).

    The timm / torchvision ImageNet recipes pair a RandAugment-style policy with
    random erasing; TrivialAugmentWide needs no magnitude to tune.
    """
    trivial, erasing = _strong_transforms()
    x = default_augment(per_image(trivial, images, generator).float().div_(255.0), size, generator)
    return per_image(erasing, x, generator)
