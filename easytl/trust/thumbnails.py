"""Thumbnails of a set of images for the HTML pages, with Grad-CAM overlays."""

from __future__ import annotations

import copy

import numpy as np

THUMBNAIL = 96  # px, the side of every thumbnail


class Thumbnails:
    """Images of X as small uint8 arrays, loaded on demand; with Grad-CAM overlays."""

    def __init__(self, clf, X):
        from ..data.sources import as_image_source
        self.clf = clf
        self.source, _ = as_image_source(X, None, size=THUMBNAIL)

    def image(self, i: int) -> np.ndarray:
        from ..data.sources import resize
        return resize(self.source.load(int(i))[None], THUMBNAIL)[0].permute(1, 2, 0).numpy()

    def heatmaps(self, indices, classes) -> list[np.ndarray]:
        import torch

        from ..data.augment import Preprocessor
        from .gradcam import grad_cam, overlay
        if not len(indices):
            return []
        config = self.clf.model_.backbone.data_config
        prep = Preprocessor(self.clf.image_size_, config["mean"], config["std"], augment=None)
        model = copy.deepcopy(self.clf.model_).float().cpu()  # the fitted model stays as it is
        # At the model's input size, as it predicted them (not thumbnails scaled back up).
        at_model_size = self.source.at_size(self.clf.image_size_)
        batch = torch.stack([at_model_size.load(int(i)) for i in indices])
        x = prep(batch, train=False).contiguous()
        maps = grad_cam(model, x, np.asarray(classes))
        small = torch.nn.functional.interpolate(torch.from_numpy(maps)[:, None], size=THUMBNAIL,
                                                mode="bilinear", align_corners=False)[:, 0].numpy()
        return [overlay(self.image(i), m) for i, m in zip(indices, small)]
