"""Preparing the data of a fit: positions in X, unlabeled marks, de-duplication of X_unlabeled."""

import csv
import warnings

import numpy as np
import pytest
from PIL import Image

from easytl import TransferClassifier

from conftest import tiny_kwargs


def _files(folder, X, y, names):
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (image, label) in enumerate(zip(X, y)):
        path = folder / f"{names}{i}_{label}.png"
        Image.fromarray((image * 255).round().astype(np.uint8)).save(path)
        paths.append(str(path))
    return paths


def test_validation_files_given_again_as_unlabeled_are_not_pseudo_labelled(textures, tmp_path):
    X, y = textures
    train = _files(tmp_path / "train", X[:60:2], y[:60:2], "t")
    val = _files(tmp_path / "val", X[1:60:6], y[1:60:6], "v")
    clf = TransferClassifier(**tiny_kwargs(epochs=1))
    with pytest.warns(UserWarning, match=r"X_unlabeled: left out 40 .*labeled images of X or X_val"):
        clf.fit(train, y[:60:2], X_val=val, y_val=y[1:60:6], X_unlabeled=train + val)
    assert clf.plan_["semi_supervised"]["n_unlabeled"] == 0
    assert not clf.plan_["semi_supervised"]["used"]


def test_arrays_given_again_as_unlabeled_are_left_out_too(textures):
    X, y = textures
    clf = TransferClassifier(**tiny_kwargs(epochs=1))
    with pytest.warns(UserWarning, match="left out 20 images that are labeled images of X or X_val"):
        clf.fit(X[0::2], y[0::2], X_val=X[1::4], y_val=y[1::4], X_unlabeled=X[1::2])
    assert clf.plan_["semi_supervised"]["n_unlabeled"] == 20


def test_minus_one_is_a_class_unless_unlabeled_label_says_otherwise(textures):
    X, names = textures
    y = np.unique(names, return_inverse=True)[1] - 1  # classes -1, 0, 1, 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a plain fit says nothing about -1 either
        clf = TransferClassifier(**tiny_kwargs(epochs=1)).fit(X, y)
    assert clf.classes_.tolist() == [-1, 0, 1, 2]
    assert "semi_supervised" not in clf.plan_
    marked = TransferClassifier(**tiny_kwargs(epochs=1, unlabeled_label=-1)).fit(X, y)
    assert marked.classes_.tolist() == [0, 1, 2]
    assert marked.plan_["semi_supervised"]["n_unlabeled"] == 20


def test_minus_one_beside_x_unlabeled_is_trained_as_a_class_with_a_warning(textures):
    X, names = textures
    y = np.unique(names, return_inverse=True)[1] - 1
    with pytest.warns(UserWarning, match=r"-1 .*trained as a class.*unlabeled_label=-1"):
        clf = TransferClassifier(**tiny_kwargs(epochs=1)).fit(X[:60], y[:60], X_unlabeled=X[60:])
    assert -1 in clf.classes_.tolist()


def test_none_in_y_names_the_fix():
    X = np.random.default_rng(0).random((8, 32, 32, 3))
    y = np.array(["a", "b", None, "a", "b", "a", "b", None], dtype=object)
    with pytest.raises(ValueError, match=r"2 labels in y are None.*unlabeled_label"):
        TransferClassifier(**tiny_kwargs(epochs=1, val_size=0)).fit(X, y)
    clf = TransferClassifier(**tiny_kwargs(epochs=1, val_size=0, unlabeled_label="?"))
    clf.fit(X, np.where(y == None, "?", y))  # noqa: E711 (elementwise)
    assert clf.classes_.tolist() == ["a", "b"] and clf.plan_["semi_supervised"]["n_unlabeled"] == 2


def test_validation_indices_are_rows_of_the_table_as_given(textures, tmp_path):
    X, y = textures
    paths = _files(tmp_path, X, y, "r")
    with open(tmp_path / "t.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label"])
        writer.writerow(["missing0.png", y[0]])
        writer.writerow(["missing1.png", y[1]])
        for path, label in zip(paths, y):
            writer.writerow([path.split("/")[-1], label])
    clf = TransferClassifier(**tiny_kwargs(epochs=1, on_bad_image="skip"))
    with pytest.warns(UserWarning, match="left out 2 rows"):
        clf.fit(str(tmp_path / "t.csv"))
    # the same images given without the two bad rows are split alike (same labels, same seed)
    reference = TransferClassifier(**tiny_kwargs(epochs=1)).fit(paths, y)
    assert len(reference.validation_indices_) == clf.plan_["n_val"] > 0
    np.testing.assert_array_equal(np.sort(clf.validation_indices_),
                                  np.sort(reference.validation_indices_) + 2)


def test_validation_indices_skip_unreadable_files_and_unlabeled_marks(textures, tmp_path):
    X, y = textures
    codes = np.unique(y, return_inverse=True)[1]
    paths = _files(tmp_path, X, codes, "u")
    (tmp_path / "bad.png").write_bytes(b"not an image")
    files = [str(tmp_path / "bad.png")] + paths
    labels = np.concatenate([[0], codes])
    labels[1::5] = -1  # every fifth of the real images is unlabeled
    clf = TransferClassifier(**tiny_kwargs(epochs=1, on_bad_image="skip", unlabeled_label=-1))
    with pytest.warns(UserWarning, match="unreadable"):
        clf.fit(files, labels)
    labeled = np.flatnonzero(labels != -1)[1:]  # positions in files of the readable labeled images
    reference = TransferClassifier(**tiny_kwargs(epochs=1)).fit([files[i] for i in labeled],
                                                                labels[labeled])
    np.testing.assert_array_equal(np.sort(clf.validation_indices_),
                                  np.sort(labeled[reference.validation_indices_]))


def test_images_marked_unlabeled_that_are_validation_images_are_left_out(textures, tmp_path):
    X, y = textures
    train = _files(tmp_path / "train", X[0::2], y[0::2], "t")
    val = _files(tmp_path / "val", X[1::4], y[1::4], "v")
    extra = _files(tmp_path / "extra", X[3::8], y[3::8], "e")
    labels = np.concatenate([y[0::2], np.full(len(val) + len(extra), "?")])
    clf = TransferClassifier(**tiny_kwargs(epochs=1, unlabeled_label="?"))
    with pytest.warns(UserWarning, match=r"images of X labelled '\?': left out 20 files"):
        clf.fit(train + val + extra, labels, X_val=val, y_val=y[1::4])
    assert clf.plan_["semi_supervised"]["n_unlabeled"] == len(extra) == 10


def test_unlabeled_label_matches_a_tables_text_and_says_when_it_marks_nothing(textures, tmp_path):
    X, y = textures
    codes = np.unique(y, return_inverse=True)[1]
    paths = _files(tmp_path, X, codes, "c")
    with open(tmp_path / "t.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label"])
        for i, (path, label) in enumerate(zip(paths, codes)):
            writer.writerow([path.split("/")[-1], -1 if i % 4 == 0 else label])
    clf = TransferClassifier(**tiny_kwargs(epochs=1, unlabeled_label=-1)).fit(str(tmp_path / "t.csv"))
    assert "-1" not in clf.classes_.tolist() and clf.plan_["semi_supervised"]["n_unlabeled"] == 20
    with pytest.warns(UserWarning, match=r"unlabeled_label=-7 marks no image"):
        TransferClassifier(**tiny_kwargs(epochs=1, unlabeled_label=-7)).fit(X, codes)
