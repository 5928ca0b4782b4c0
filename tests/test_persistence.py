"""Model files: what a fitted estimator is after save and load (easytl/persistence.py)."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.base import clone

from conftest import tiny_cnn, tiny_kwargs
from easytl import Phase, TransferClassifier
from easytl.io import load_model_file, save_model_file


@pytest.fixture(scope="module")
def folder_with_a_broken_file(tmp_path_factory, digits):
    """Two class folders of 12 small digit PNGs each, and one file that is not an image."""
    root = tmp_path_factory.mktemp("persist") / "digits"
    X, y = digits
    for label in (0, 1):
        (root / f"class_{label}").mkdir(parents=True)
        for k, index in enumerate(np.flatnonzero(y == label)[:12]):
            image = Image.fromarray((X[index] * 255).astype(np.uint8)).resize((24, 24))
            image.save(root / f"class_{label}" / f"{k}.png")
    (root / "class_0" / "broken.png").write_bytes(b"not an image")
    return root


@pytest.fixture(scope="module")
def skipping_fit(folder_with_a_broken_file, tmp_path_factory):
    """A tiny model fitted on the folder with on_bad_image='skip', saved, and loaded again."""
    with pytest.warns(UserWarning, match="unreadable"):
        clf = TransferClassifier(**tiny_kwargs(on_bad_image="skip", val_size=0.25)).fit(
            str(folder_with_a_broken_file))
    path = clf.save(tmp_path_factory.mktemp("model") / "m.easytl")
    return clf, path, TransferClassifier.load(path, backbone=tiny_cnn())


def test_load_restores_the_phases_that_ran_and_the_learning_rate(skipping_fit):
    clf, _, loaded = skipping_fit
    assert len(clf.phases_) >= 1
    assert all(isinstance(phase, Phase) for phase in loaded.phases_)
    assert loaded.phases_ == clf.phases_  # frozen dataclasses: equal field by field
    assert isinstance(loaded.lr_, float) and loaded.lr_ == clf.lr_


def test_load_restores_the_validation_positions_and_the_skipped_files(skipping_fit):
    clf, _, loaded = skipping_fit
    assert clf.validation_indices_ is not None and len(clf.validation_indices_) > 0
    assert isinstance(loaded.validation_indices_, np.ndarray)
    assert loaded.validation_indices_.dtype.kind == "i"
    np.testing.assert_array_equal(loaded.validation_indices_, clf.validation_indices_)
    assert len(clf.skipped_images_) == 1 and clf.skipped_images_[0][0].name == "broken.png"
    assert loaded.skipped_images_ == clf.skipped_images_
    assert [type(path) for path, _ in loaded.skipped_images_] == [type(clf.skipped_images_[0][0])]


def test_no_hold_out_comes_back_as_none(textures, tmp_path):
    X, y = textures
    clf = TransferClassifier(**tiny_kwargs(val_size=0, epochs=1)).fit(X, y)
    assert clf.validation_indices_ is None and clf.skipped_images_ == []
    loaded = TransferClassifier.load(clf.save(tmp_path / "m.easytl"), backbone=tiny_cnn())
    assert loaded.validation_indices_ is None and loaded.skipped_images_ == []


@pytest.mark.parametrize("labels, class_weight", [
    ("int", {0: 2.0}),
    ("int", {np.int64(0): 2.0, np.int64(2): 0.5}),
    ("str", {"stripes": 2.0}),
    ("str", {np.str_("stripes"): 3}),
], ids=["int", "numpy-int", "str", "numpy-str"])
def test_class_weight_keeps_its_label_types_and_a_clone_of_the_loaded_model_refits(
        textures, tmp_path, labels, class_weight):
    X, y = textures
    if labels == "int":
        y = np.unique(y, return_inverse=True)[1]
    clf = TransferClassifier(**tiny_kwargs(class_weight=class_weight, epochs=1)).fit(X, y)
    loaded = TransferClassifier.load(clf.save(tmp_path / "m.easytl"), backbone=tiny_cnn())
    got = loaded.get_params()["class_weight"]
    assert got == class_weight
    assert [type(key) for key in got] == [type(key) for key in class_weight]
    refit = clone(loaded).fit(X, y)
    np.testing.assert_array_equal(refit.classes_, clf.classes_)


def _as_older_file(path, tmp_path, edit) -> Path:
    """The model file at ``path`` as an older easytl wrote it: ``edit`` changes its manifest."""
    manifest, tensors = load_model_file(path)
    for key in ("format", "format_version", "checksum"):
        del manifest[key]
    edit(manifest)
    return save_model_file(tmp_path / "older.easytl", manifest, tensors)


def test_files_without_the_new_fields_still_load(skipping_fit, tmp_path):
    clf, path, _ = skipping_fit

    def edit(manifest):
        for key in ("phases", "lr", "validation_indices", "skipped_images", "class_weight"):
            manifest.pop(key, None)
    older = TransferClassifier.load(_as_older_file(path, tmp_path, edit), backbone=tiny_cnn())
    np.testing.assert_array_equal(older.classes_, clf.classes_)
    # the plan recorded the phases that ran and the head LR: read from there
    assert older.phases_ == clf.phases_ and older.lr_ == clf.lr_
    # what an older file never held is not made up
    assert not hasattr(older, "validation_indices_") and not hasattr(older, "skipped_images_")


def test_an_older_files_string_keyed_class_weight_is_read_back_as_the_classes(textures, tmp_path):
    X, y = textures
    y = np.unique(y, return_inverse=True)[1]
    clf = TransferClassifier(**tiny_kwargs(class_weight={0: 2.0}, epochs=1)).fit(X, y)

    def edit(manifest):  # JSON made the int keys strings; older files had no typed copy
        manifest.pop("class_weight", None)
        manifest["params"]["class_weight"] = {"0": 2.0}
    older = TransferClassifier.load(_as_older_file(clf.save(tmp_path / "m.easytl"), tmp_path, edit),
                                    backbone=tiny_cnn())
    got = older.get_params()["class_weight"]
    assert got == {0: 2.0} and type(next(iter(got))) is int
    clone(older).fit(X, y)


def test_a_class_weight_an_older_file_could_not_store_is_named_at_load(textures, tmp_path):
    X, y = textures
    clf = TransferClassifier(**tiny_kwargs(epochs=1)).fit(X, y)

    def edit(manifest):  # numpy keys failed json.dumps: older files marked the parameter
        manifest.pop("class_weight", None)
        manifest["params"]["class_weight"] = "<not stored>"
    older_file = _as_older_file(clf.save(tmp_path / "m.easytl"), tmp_path, edit)
    with pytest.warns(UserWarning, match="class_weight"):
        older = TransferClassifier.load(older_file, backbone=tiny_cnn())
    assert older.get_params()["class_weight"] is None
