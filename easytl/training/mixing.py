"""MixUp and CutMix of a training batch, with soft targets.

MixUp (Zhang et al. 2018) blends each input with another of the batch,
``λ x_i + (1 − λ) x_j``, and the targets alike; CutMix (Yun et al. 2019)
pastes a box of ``x_j`` into ``x_i`` and mixes the targets by the box's area.
λ ~ Beta(α, α), one draw per batch, and the partner of image i is image
i − 1 (the batch rolled by one) — the recipe of torchvision's v2 ``MixUp`` /
``CutMix``. Those take only class indices of 4-D images and draw from torch's
global generator; easytl also mixes multi-label targets and cached pooled
features, and draws from the fit's seeded generator, hence these few lines.

What is mixed is whatever enters the first trainable stage: the images when
the whole network trains, the cached activations of the frozen stages
otherwise. Mixing images would need the frozen stages to run on every mixed
batch, which is what the feature cache exists to avoid; mixing activations
at that boundary is Manifold Mixup (Verma et al. 2019), which regularises
the trainable part the same way. On pooled features (a head-only phase) there
is no spatial map to cut, so a CutMix batch mixes as MixUp there.
"""

from __future__ import annotations

import numpy as np
import torch


class BatchMixer:
    """Mix a batch ``(x, soft_targets)`` of ``n_classes``; ``mixup`` / ``cutmix`` are the
    Beta(α, α) α's (None: off). With both, each batch is MixUp or CutMix with equal odds."""

    def __init__(self, n_classes: int, mixup: float | None = None, cutmix: float | None = None):
        self.n_classes, self.mixup, self.cutmix = n_classes, mixup, cutmix

    def __call__(self, x: torch.Tensor, targets: torch.Tensor, generator: torch.Generator):
        """Return mixed inputs, mixed targets and the λ used (the share of each image itself)."""
        kinds = [k for k, alpha in (("mixup", self.mixup), ("cutmix", self.cutmix)) if alpha]
        kind = kinds[int(torch.randint(len(kinds), (1,), generator=generator))]
        alpha = self.mixup if kind == "mixup" else self.cutmix
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        lam = float(np.random.default_rng(seed).beta(alpha, alpha))
        partner_x, partner_t = x.roll(1, 0), targets.roll(1, 0)
        if kind == "cutmix" and x.dim() == 4:
            x, lam = cut_and_paste(x, partner_x, lam, generator)
        else:
            x = x * lam + partner_x * (1.0 - lam)
        return x, targets * lam + partner_t * (1.0 - lam), lam


def cut_and_paste(x: torch.Tensor, partner: torch.Tensor, lam: float, generator):
    """Paste a box of ``partner`` covering about 1 − λ of the area into ``x``; return the
    result and λ corrected to the box actually pasted (it is clipped at the borders)."""
    height, width = x.shape[-2:]
    cut = (1.0 - lam) ** 0.5
    centre_y, centre_x = (int(torch.randint(n, (1,), generator=generator)) for n in (height, width))
    half_h, half_w = int(height * cut / 2), int(width * cut / 2)
    top, bottom = max(centre_y - half_h, 0), min(centre_y + half_h, height)
    left, right = max(centre_x - half_w, 0), min(centre_x + half_w, width)
    out = x.clone()
    out[..., top:bottom, left:right] = partner[..., top:bottom, left:right]
    return out, 1.0 - (bottom - top) * (right - left) / (height * width)
