"""Test-time augmentation shows a model only the views it was trained to tolerate."""

import numpy as np
import pytest

from easytl import TransferClassifier
from easytl.data.augment import trains_on_mirror_images

from conftest import tiny_kwargs


def _mirrored(X):
    return np.ascontiguousarray(X[:, :, ::-1])


@pytest.fixture(scope="module")
def fits(textures):
    X, y = textures

    def fit(augment):
        return TransferClassifier(**tiny_kwargs(epochs=1, augment=augment)).fit(X, y)
    return {"light": fit("light"), "none": fit(None),
            "custom": fit(lambda images, generator: images)}


def test_a_model_trained_with_mirror_images_averages_each_image_with_its_mirror(fits, textures):
    X = textures[0][:12]
    clf = fits["light"]
    # two views: the image and its mirror, so an image and its mirror get the same answer
    np.testing.assert_allclose(clf.predict_tta(X, n_augment=2, return_proba=True),
                               clf.predict_tta(_mirrored(X), n_augment=2, return_proba=True),
                               atol=1e-5)


@pytest.mark.parametrize("kind", ["none", "custom"])
def test_a_model_never_shown_mirror_images_gets_none_at_test_time(fits, textures, kind):
    X = textures[0][:12]
    clf = fits[kind]
    plain = clf.predict_tta(X, n_augment=2, return_proba=True)
    mirrored = clf.predict_tta(_mirrored(X), n_augment=2, return_proba=True)
    assert np.abs(plain - mirrored).max() > 1e-4  # no mirror view was averaged in (with: < 1e-5)
    assert clf.plan_["augment"] == ("custom" if kind == "custom" else None)


def test_which_recipes_train_on_mirror_images():
    assert all(trains_on_mirror_images(r) for r in ("default", "light", "strong", "flips", "turns"))
    assert not any(trains_on_mirror_images(r) for r in ("no_mirror", None, "custom"))
