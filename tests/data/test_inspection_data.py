"""The inspection proxy (make_inspection_images): shapes, classes, determinism, split, defects."""

import numpy as np
import pytest
from scipy.ndimage import binary_dilation

pytest.importorskip("skimage", reason="the proxy's backgrounds are scikit-image's sample photos")

from easytl import make_inspection_images  # noqa: E402
from easytl.data.synthetic import INSPECTION_CLASSES, INSPECTION_SOURCES  # noqa: E402


@pytest.fixture(scope="module")
def proxy():
    return make_inspection_images(n_images=100, size=64, random_state=3, return_masks=True)


def test_shapes_dtype_and_class_shares(proxy):
    X, y, source, masks = proxy
    assert X.shape == (100, 64, 64) and X.dtype == np.uint8
    assert y.shape == source.shape == (100,) and masks.shape == X.shape and masks.dtype == bool
    counts = {c: int((y == c).sum()) for c in INSPECTION_CLASSES}
    assert counts == {"good": 57, "minor": 12, "moderate": 4, "severe": 27}  # the rare class: 4%
    assert set(source) <= set(INSPECTION_SOURCES["train"] + INSPECTION_SOURCES["test"])


def test_same_seed_same_images_other_seed_other_images():
    a = make_inspection_images(n_images=12, size=48, random_state=1)
    b = make_inspection_images(n_images=12, size=48, random_state=1)
    c = make_inspection_images(n_images=12, size=48, random_state=2)
    for left, right in zip(a, b):
        np.testing.assert_array_equal(left, right)
    assert not np.array_equal(a[0], c[0])


def test_train_and_test_splits_never_share_a_photo():
    _, _, train = make_inspection_images(n_images=60, size=48, split="train", random_state=0)
    _, _, test = make_inspection_images(n_images=60, size=48, split="test", random_state=0)
    assert set(train) <= set(INSPECTION_SOURCES["train"]) and len(set(train)) > 3
    assert set(test) <= set(INSPECTION_SOURCES["test"]) and len(set(test)) > 1
    assert not set(train) & set(test)


def test_defects_darken_the_image_and_only_defective_images_have_them(proxy):
    X, y, _, masks = proxy
    good = y == "good"
    assert not masks[good].any()
    assert all(masks[i].any() for i in np.flatnonzero(~good))
    # a defect is darker than the pixels right around it (its local background), on average in
    # every class, the more so the more severe the class, and in every severe image
    darker = {c: [] for c in INSPECTION_CLASSES[1:]}
    for i in np.flatnonzero(~good):
        ring = binary_dilation(masks[i], iterations=3) & ~masks[i]
        image = X[i].astype(float)
        darker[y[i]].append(image[ring].mean() - image[masks[i]].mean())
    means = [np.mean(darker[c]) for c in INSPECTION_CLASSES[1:]]
    assert 0 < means[0] < means[1] < means[2], means
    assert min(darker["severe"]) > 0


@pytest.mark.parametrize("kwargs, message", [
    ({"class_fractions": (0.5, 0.5)}, "class_fractions"),
    ({"split": "val"}, "split"),
    ({"n_images": 2}, "n_images"),
])
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_inspection_images(**{"size": 48, **kwargs})
