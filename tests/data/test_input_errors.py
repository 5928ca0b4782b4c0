"""Bad input gets a clear error naming the problem and the fix, before any training starts."""

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from sklearn.exceptions import NotFittedError

from easytl import Callback, ModelFileError, TransferClassifier

from conftest import tiny_kwargs

RNG = np.random.default_rng(0)
X16 = RNG.random((20, 16, 16, 3)).astype(np.float32)
Y = np.array([0, 1] * 10)


class NoTraining(Callback):
    """Fails the test if a bad-input case ever reaches training."""

    def on_train_begin(self, logs=None):
        raise AssertionError("training started on bad input")


def fit(X, y=Y, **overrides):
    """Fit a tiny model; by default any case that reaches training fails the test."""
    settings = dict(epochs=1, callbacks=[NoTraining()])
    settings.update(overrides)
    return TransferClassifier(**tiny_kwargs(**settings)).fit(X, y)


@pytest.mark.parametrize("X, y, error, message", [
    (X16, Y[:15], ValueError, "20 images but y has 15 labels"),
    (X16, np.zeros(20), ValueError, "single class"),
    (np.where(X16 > 0.99, np.nan, X16), Y, ValueError, "NaN or infinite"),
    (np.where(X16 > 0.99, np.inf, X16), Y, ValueError, "NaN or infinite"),
    (X16 * 3, Y, ValueError, r"float images must lie in \[0, 1\]. Divide by 255"),
    ((X16 * 300).astype(np.int32), Y, ValueError, r"integer images must lie in \[0, 255\]"),
    (RNG.random((20, 16, 16, 5)), Y, ValueError, "no axis of size 1, 3 or 4"),
    (X16[None], Y, ValueError, r"expected \(N, H, W\), \(N, H, W, C\)"),
    (X16[:0], Y[:0], ValueError, "X is empty"),
    ([], [], ValueError, "X is empty"),
    (np.array([X16[0], X16[1, :8]], dtype=object), Y[:2], TypeError,
     "images of different sizes.*pass a list"),
    (X16[:, :0], Y, ValueError, "0 pixels wide or high"),
    ([X16[0], X16[1][:0]], Y[:2], ValueError, r"X\[1\].*0 pixels wide or high"),
    ([Image.new("RGB", (0, 4)), Image.new("RGB", (4, 4))], Y[:2], ValueError, "0 pixels"),
    (X16.astype(np.complex64), Y, TypeError, "unsupported dtype complex64"),
    (X16, Y[:, None], ValueError, "one label per image"),
    (None, Y, TypeError, "X of type NoneType is not supported"),
])
def test_bad_arrays_and_labels(X, y, error, message):
    with pytest.raises(error, match=message):
        fit(X, y)


def test_gray_and_rgba_images_are_converted():
    gray = fit((X16[..., 0] * 255).astype(np.uint8), callbacks=None)
    rgba = fit(np.concatenate([X16, np.ones_like(X16[..., :1])], axis=-1), callbacks=None)
    assert gray.predict(X16[..., 0]).shape == (20,) and rgba.predict(X16).shape == (20,)


def test_mixed_sizes_in_a_list_are_resized():
    images = [RNG.random((10 + i, 12, 3)) for i in range(20)]
    clf = fit(images, val_size=0, callbacks=None)
    assert clf.predict_proba(images).shape == (20, 2)


def test_unknown_names_list_close_matches():
    with pytest.raises(ValueError, match="resnet18"):
        TransferClassifier(backbone="resnet81").fit(X16, Y)
    with pytest.raises(ValueError, match="progressive"):
        fit(X16, schedule="progresive")
    with pytest.raises(ValueError, match="mlp"):
        fit(X16, head="mpl")


def test_validation_split_that_leaves_a_class_without_training_images():
    y = np.array([0] * 19 + [1])
    with pytest.raises(ValueError, match="every class needs an image on both sides"):
        fit(X16, y)


def test_labels_unseen_in_fit_and_predict_before_fit():
    with pytest.raises(NotFittedError):
        TransferClassifier().predict(X16)
    clf = fit(X16, val_size=0, callbacks=None)
    with pytest.raises(ValueError, match=r"labels never seen in fit: \['7'\]"):
        clf.score(X16[:2], [0, 7])


@pytest.fixture
def folder_with_bad_files(digit_folder):
    (digit_folder / "class_0" / "notes.txt").write_text("not an image")
    good = next((digit_folder / "class_1").glob("*.png")).read_bytes()
    (digit_folder / "class_1" / "truncated.png").write_bytes(good[: len(good) // 2])
    (digit_folder / "class_2" / "empty.jpg").write_bytes(b"")
    (digit_folder / "class_2" / ".hidden.png").write_bytes(b"ignored: hidden files are not data")
    return digit_folder


def test_bad_files_in_a_folder_are_listed_before_training(folder_with_bad_files):
    # notes.txt has no image extension: left out with a one-line notice, not an error.
    with pytest.raises(ValueError) as caught, \
            pytest.warns(UserWarning, match=r"left out 1 file: non-images in the .*: class_0/notes.txt"):
        fit(str(folder_with_bad_files), None)
    message = str(caught.value)
    assert "2 of 26 image files in X cannot be read" in message
    for name in ("truncated.png", "empty.jpg"):
        assert name in message
    assert "notes.txt" not in message
    assert ".hidden.png" not in message and "on_bad_image='skip'" in message


def test_bad_files_can_be_skipped_and_are_reported(folder_with_bad_files):
    with pytest.warns(UserWarning, match="left out 2 unreadable image files"):
        clf = TransferClassifier(**tiny_kwargs(epochs=1, on_bad_image="skip")).fit(
            str(folder_with_bad_files))
    assert sorted(p.name for p, _ in clf.skipped_images_) == ["empty.jpg", "truncated.png"]
    assert len(clf.validation_indices_) == 5  # 20% of the 24 good images, rounded up
    from easytl.data.sources import read_class_folders
    paths, labels = read_class_folders(folder_with_bad_files)  # what fit listed, bad files too
    held_out = [paths[i] for i in clf.validation_indices_]
    assert all(p.name.endswith((".png", ".PNG")) and p.name != "truncated.png" for p in held_out)
    assert sorted(labels[clf.validation_indices_]) == sorted(p.parent.name for p in held_out)
    with pytest.raises(ValueError, match="on_bad_image must be"):
        fit(X16, on_bad_image="ignore")


def test_model_file_problems(tmp_path):
    clf = fit(X16, val_size=0, callbacks=None, backbone="efficientnet_lite0", weights=None,
              image_size=32)
    path = clf.save(tmp_path / "m.easytl")
    data = path.read_bytes()
    with pytest.raises(FileNotFoundError, match="model file not found"):
        TransferClassifier.load(tmp_path / "missing.easytl")
    (tmp_path / "truncated.easytl").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="truncated.easytl is not a readable easytl model file"):
        TransferClassifier.load(tmp_path / "truncated.easytl")
    newer = data.replace(b'format_version\\": 1', b'format_version\\": 9')  # JSON inside JSON
    assert newer != data
    (tmp_path / "newer.easytl").write_bytes(newer)
    with pytest.raises(ModelFileError, match="newer.easytl has model-file version 9.*Upgrade"):
        TransferClassifier.load(tmp_path / "newer.easytl")
    assert issubclass(ModelFileError, ValueError)


# --------------------------------------------------------------------------- property test

shapes = st.one_of(
    st.tuples(st.integers(0, 6), st.integers(0, 9), st.integers(0, 9)),
    st.tuples(st.integers(0, 6), st.integers(0, 9), st.integers(0, 9), st.integers(0, 5)),
    st.tuples(st.integers(0, 6), st.integers(0, 5), st.integers(0, 9), st.integers(0, 9)),
    st.tuples(st.integers(0, 4)),
    st.tuples(st.integers(0, 3), st.integers(0, 3), st.integers(1, 4), st.integers(1, 4),
              st.integers(1, 3)),
)
dtypes = st.sampled_from([np.uint8, np.int16, np.int64, np.float16, np.float32, np.float64, bool])
fills = st.sampled_from(["unit", "bytes", "wide", "nan", "inf", "negative"])


def make_array(shape, dtype, fill, seed):
    rng = np.random.default_rng(seed)
    values = {"unit": rng.random(shape), "bytes": rng.integers(0, 256, shape),
              "wide": rng.normal(0, 1000, shape), "negative": -rng.random(shape),
              "nan": np.where(rng.random(shape) > 0.7, np.nan, rng.random(shape)),
              "inf": np.where(rng.random(shape) > 0.7, np.inf, rng.random(shape))}[fill]
    with np.errstate(invalid="ignore", over="ignore"):
        return values.astype(dtype)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shape=shapes, dtype=dtypes, fill=fills, n_classes=st.integers(1, 3), seed=st.integers(0, 9),
       as_list=st.booleans())
def test_anything_gives_a_clear_error_or_a_valid_result(shape, dtype, fill, n_classes, seed, as_list):
    X = make_array(shape, dtype, fill, seed)
    y = np.arange(shape[0]) % n_classes
    if as_list:
        X = list(X)
    clf = TransferClassifier(**tiny_kwargs(epochs=1, val_size=0, image_size=16))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            clf.fit(X, y)
    except (ValueError, TypeError) as exc:
        assert str(exc)  # a message, not a bare exception
        return
    proba = clf.predict_proba(X)
    assert proba.shape == (len(y), len(clf.classes_))
    assert np.isfinite(proba).all() and np.allclose(proba.sum(axis=1), 1, atol=1e-5)
    assert set(clf.predict(X)) <= set(clf.classes_)
