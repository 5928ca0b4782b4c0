import numpy as np
import pytest
import torch
from torch import nn

from easytl import Callback, Phase, TransferClassifier, make_textures


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


def drifted_photos(n_train=30, n_test=20, size=48, seed=0):
    """Four classes cut from scikit-image's photos as real data drifts: training crops from
    the top half of each photo, test crops from its bottom half; and crops of five
    unrelated photos. Returns X_train, y_train, X_test, y_test, X_unrelated (uint8 HWC)."""
    import skimage.data
    from PIL import Image
    rng = np.random.default_rng(seed)

    def crops(name, half, n):
        image = getattr(skimage.data, name)()
        image = np.repeat(image[..., None], 3, 2) if image.ndim == 2 else image[..., :3]
        height, width = image.shape[:2]
        side = min(height // 2, width) * 2 // 3
        top = 0 if half == "top" else height // 2
        out = []
        for _ in range(n):
            i, j = rng.integers(top, top + height // 2 - side + 1), rng.integers(0, width - side + 1)
            crop = Image.fromarray(image[i:i + side, j:j + side]).resize((size, size), Image.BILINEAR)
            out.append(np.asarray(crop))
        return np.stack(out)
    classes = ["chelsea", "coffee", "rocket", "immunohistochemistry"]
    X_train = np.concatenate([crops(name, "top", n_train) for name in classes])
    X_test = np.concatenate([crops(name, "bottom", n_test) for name in classes])
    unrelated = np.concatenate([crops(name, "top", 4) for name in
                                ("astronaut", "camera", "coins", "colorwheel", "hubble_deep_field")])
    return (X_train, np.repeat(classes, n_train), X_test, np.repeat(classes, n_test), unrelated)


class InterruptAt(Callback):
    """Presses Ctrl-C at the end of one epoch (before that epoch's checkpoint is written)."""

    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs):
        if epoch == self.epoch:
            raise KeyboardInterrupt


@pytest.fixture
def interrupt_at(monkeypatch):
    """Make Ctrl-C arrive during the n-th training epoch."""
    import easytl.training.trainer
    original = easytl.training.trainer.Trainer._train_epoch

    def arm(n):
        calls = []

        def epoch(self, *args, **kwargs):
            calls.append(1)
            if len(calls) == n:
                raise KeyboardInterrupt
            return original(self, *args, **kwargs)
        monkeypatch.setattr(easytl.training.trainer.Trainer, "_train_epoch", epoch)
    return arm


PROBE = [Phase(1, 0, probe=True, name="probe")]


def lite0(**overrides):
    """The packaged Lite0 at 32 px with a probe only: a real pretrained fit in seconds."""
    kwargs = dict(image_size=32, schedule=PROBE, head="linear", val_size=0.25, mixed_precision="no",
                  random_state=0, verbose=0)
    kwargs.update(overrides)
    return TransferClassifier("efficientnet_lite0", **kwargs)


def chromium():
    """(playwright.sync_api, the Chromium executable) for a test that opens a page; skipped when
    Chromium is missing, failed instead under EASYTL_REQUIRE_BROWSER (which .ci/run sets)."""
    import os
    import shutil
    browser_path = shutil.which("chromium") or shutil.which("chromium-browser")
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is a dev dependency")
    if browser_path is None:
        if os.environ.get("EASYTL_REQUIRE_BROWSER"):
            pytest.fail("chromium is not installed (apt-get install chromium)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return playwright, browser_path
