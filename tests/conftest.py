import numpy as np
import pytest
import torch
from torch import nn

from easytl import make_textures


def tiny_cnn() -> nn.Module:
    """Two conv blocks with BatchNorm: a backbone that fits in a second."""
    def block(cin, cout):
        return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=2, padding=1), nn.BatchNorm2d(cout),
                             nn.ReLU())
    torch.manual_seed(0)
    return nn.Sequential(block(3, 8), block(8, 16))


def tiny_kwargs(**overrides):
    """Estimator settings for fast CPU tests on 32 px images."""
    kwargs = dict(backbone=tiny_cnn(), image_size=32, epochs=2, batch_size=16, val_size=0.2,
                  mixed_precision="no", random_state=0, verbose=0, lr=1e-2)
    kwargs.update(overrides)
    return kwargs


@pytest.fixture(scope="session")
def textures():
    """80 images (20 per class), 32 px."""
    return make_textures(n_per_class=20, size=32, random_state=0)


@pytest.fixture(scope="session")
def digits():
    from sklearn.datasets import load_digits
    data = load_digits()
    return (data.images / 16.0).astype(np.float32), data.target


@pytest.fixture
def digit_folder(tmp_path, digits):
    """A folder with one sub-folder per class of small PNGs (3 classes × 8 images)."""
    from PIL import Image
    X, y = digits
    for label in (0, 1, 2):
        folder = tmp_path / "digits" / f"class_{label}"
        folder.mkdir(parents=True)
        for k, index in enumerate(np.flatnonzero(y == label)[:8]):
            image = Image.fromarray((X[index] * 255).astype(np.uint8)).resize((24, 24))
            ext = ".PNG" if k % 2 else ".png"
            image.save(folder / f"{k}{ext}", format="PNG")
    return tmp_path / "digits"
