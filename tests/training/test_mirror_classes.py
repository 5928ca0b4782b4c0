"""Classes that a mirror image changes: the default must find it with few or no held-out images
(the training images, cross-fitted), and not end below its own probe."""

import numpy as np
import pytest
from PIL import Image

from easytl import Phase, TransferClassifier


def mirror_task(n_train=20, n_test=15, size=48, seed=0):
    """Crops of two photos and of their mirror images as four classes (train and test crops
    from the same photos, drawn apart)."""
    import skimage.data
    rng = np.random.default_rng(seed)

    def crops(name, n):
        image = getattr(skimage.data, name)()[..., :3]
        h, w = image.shape[:2]
        side = min(h, w) // 2
        out = []
        for _ in range(n):
            i, j = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
            crop = Image.fromarray(image[i:i + side, j:j + side]).resize((size, size), Image.BILINEAR)
            out.append(np.asarray(crop))
        return np.stack(out)
    X_train, y_train, X_test, y_test = [], [], [], []
    for name in ("chelsea", "coffee"):
        for X, y, n in ((X_train, y_train, n_train), (X_test, y_test, n_test)):
            images = crops(name, n)
            X += [images, np.ascontiguousarray(images[:, :, ::-1])]
            y += [name] * n + [f"{name} mirrored"] * n
    return np.concatenate(X_train), np.array(y_train), np.concatenate(X_test), np.array(y_test)


@pytest.mark.slow  # two Lite0 fits at 48 px
def test_the_default_leaves_out_mirror_images_and_is_not_below_its_probe():
    X, y, X_test, y_test = mirror_task()
    kwargs = dict(image_size=48, random_state=0, verbose=0, mixed_precision="no")
    probe = TransferClassifier(schedule=[Phase(1, 0, probe=True, name="probe")], head="linear",
                               val_size=0.1, **kwargs).fit(X, y)
    clf = TransferClassifier(**kwargs).fit(X, y)
    assert clf.plan_["n_val"] == 0                 # few-shot: nothing held out, the training images
    assert len(clf.phases_) == 2                   # tell it (cross-fitted), and fine-tuning ran
    assert clf.plan_["symmetries"]["recipe"] == "no_mirror"
    assert clf.history_[0]["symmetry_evidence"] == "training (cross-fitted)"
    assert "mirror image" in clf.history_[0]["note"] and "no_mirror" in clf.history_[0]["note"]
    assert clf.score(X_test, y_test) >= probe.score(X_test, y_test)
    # test-time augmentation follows: no mirror views, so no left/right averaging
    assert np.mean(clf.predict_tta(X_test, n_augment=3) == y_test) >= probe.score(X_test, y_test)
