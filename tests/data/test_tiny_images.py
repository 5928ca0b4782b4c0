"""Images far smaller than the model's input size (a 1x1 thumbnail, an icon) are named."""

import warnings

import numpy as np
import pytest
from PIL import Image

from easytl import TransferClassifier
from easytl.data.fit_data import ReadOptions, prepare

from conftest import tiny_kwargs

FAR_SMALLER = "far smaller than the"


def _save(path, side, seed=0):
    pixels = np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def _folder(root, tiny=(), side=32):
    """Classes a and b, 8 images of ``side`` px each, and the (name, side) files in ``tiny`` in b."""
    for label in "ab":
        for k in range(8):
            _save(root / label / f"{k}.png", side, seed=k)
    for name, small in tiny:
        _save(root / "b" / name, small)
    return root


def _caught(call):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = call()
    return result, [str(w.message) for w in caught if FAR_SMALLER in str(w.message)]


def test_a_1x1_image_in_a_training_folder_is_named(tmp_path):
    folder = _folder(tmp_path / "data", tiny=[("tiny.png", 1)])
    _, messages = _caught(lambda: prepare(folder, options=ReadOptions(image_size=32, verbose=0)))
    assert len(messages) == 1
    assert "X: 1 of 17 images" in messages[0] and "input size (32 px" in messages[0]
    assert "tiny.png (1x1)" in messages[0]


def test_images_of_a_usual_size_say_nothing(tmp_path):
    folder = _folder(tmp_path / "data", tiny=[("small.png", 8)])  # 8 px: not under 32 / 8
    _, messages = _caught(lambda: prepare(folder, options=ReadOptions(image_size=32, verbose=0)))
    assert messages == []


def test_with_image_size_auto_the_chosen_input_size_decides(tmp_path):
    folder = _folder(tmp_path / "data", tiny=[("one.png", 1), ("twenty.png", 20)], side=64)
    prepared, messages = _caught(lambda: prepare(folder, options=ReadOptions(verbose=0)))
    # before the plan: against the smallest input size "auto" chooses (96 px)
    assert len(messages) == 1 and "one.png (1x1)" in messages[0] and "twenty" not in messages[0]
    assert "the smallest input size this fit may choose (96 px" in messages[0]
    _, later = _caught(lambda: prepared.check_input_size(224))
    assert len(later) == 1 and "twenty.png (20x20)" in later[0] and "one.png" not in later[0]
    assert "input size (224 px" in later[0]
    _, again = _caught(lambda: prepared.check_input_size(96))
    assert again == []


def test_tiny_arrays_lists_and_validation_images_are_named():
    tiny = np.zeros((10, 2, 2, 3), dtype=np.uint8)
    y = np.array(["a", "b"] * 5)
    _, messages = _caught(lambda: prepare(tiny, y, options=ReadOptions(image_size=32)))
    assert len(messages) == 1 and "X: all 10 images are 2x2" in messages[0]
    images = [np.zeros((32, 32, 3), dtype=np.uint8) for _ in range(6)]
    images[3] = np.zeros((2, 5, 3), dtype=np.uint8)
    _, messages = _caught(lambda: prepare(images, y[:6], X_val=tiny[:2], y_val=y[:2],
                                          options=ReadOptions(image_size=32)))
    assert len(messages) == 2
    assert "X: 1 of 6 images" in messages[0] and "X[3] (2x5)" in messages[0]
    assert "X_val: all 2 images are 2x2" in messages[1]


@pytest.fixture(scope="module")
def fitted(textures):
    X, y = textures
    return TransferClassifier(**tiny_kwargs(epochs=1)).fit(X, y)


def test_fit_names_a_1x1_training_image(tmp_path):
    folder = _folder(tmp_path / "data", tiny=[("tiny.png", 1)])
    _, messages = _caught(lambda: TransferClassifier(**tiny_kwargs(epochs=1)).fit(folder))
    assert len(messages) == 1 and "tiny.png (1x1)" in messages[0]


def test_predict_names_images_far_below_the_input_size(fitted, tmp_path):
    folder = _folder(tmp_path / "data", tiny=[("tiny.png", 1), ("dot.png", 2)])
    paths = sorted(str(p) for p in folder.rglob("*.png"))
    labels, messages = _caught(lambda: fitted.predict(paths))
    assert len(labels) == 18 and len(messages) == 1
    assert "2 of 18 images" in messages[0] and "tiny.png (1x1)" in messages[0]
    assert "dot.png (2x2)" in messages[0]
    _, messages = _caught(lambda: fitted.predict_proba(folder / "b"))
    assert len(messages) == 1 and "tiny.png (1x1)" in messages[0]
    proba, messages = _caught(lambda: fitted.predict_proba(np.zeros((3, 2, 2, 3), dtype=np.uint8)))
    assert proba.shape == (3, 4) and len(messages) == 1 and "all 3 images are 2x2" in messages[0]


def test_predict_on_usual_images_says_nothing(fitted, textures):
    X, _ = textures
    _, messages = _caught(lambda: fitted.predict(X[:5]))
    assert messages == []
