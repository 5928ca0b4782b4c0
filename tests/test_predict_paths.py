"""``predict`` on a folder: its rows follow ``easytl.list_images(folder)``, the sorted listing the
estimator reads, so the paths of the labels are known without predict keeping any state."""

import numpy as np
import pytest
from PIL import Image

import easytl
from easytl import TransferClassifier, make_textures

from conftest import tiny_kwargs


@pytest.fixture(scope="module")
def fitted():
    X, y = make_textures(n_per_class=8, size=32, random_state=0)
    return TransferClassifier(**tiny_kwargs(epochs=1, val_size=0)).fit(X, y)


def _write(folder, images, names):
    for image, name in zip(images, names):
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((image * 255).astype(np.uint8)).save(path)


def test_predict_on_a_folder_answers_in_the_order_of_list_images(fitted, tmp_path):
    X, _ = make_textures(n_per_class=2, size=32, random_state=4)
    # names that the file system may list in any order; nested files; upper-case extensions
    names = ["b/z.png", "b/A.PNG", "a/deep/k.png", "a/10.png", "a/9.png", "C/x.png", "b/m.png",
             "a/2.png"]
    _write(tmp_path / "classes", X, names)
    _write(tmp_path / "flat", X, [n.replace("/", "_") for n in names])
    for folder in (tmp_path / "classes", tmp_path / "flat"):
        paths = easytl.list_images(folder)
        assert isinstance(paths, list) and all(isinstance(p, str) for p in paths)
        assert len(paths) == len(names) and paths == sorted(paths, key=lambda p: p.split("/"))
        labels = fitted.predict(str(folder))
        assert isinstance(labels, np.ndarray) and labels.shape == (len(names),)
        np.testing.assert_array_equal(labels, fitted.predict(paths))  # row i is paths[i]
        np.testing.assert_allclose(fitted.predict_proba(folder), fitted.predict_proba(paths), atol=1e-6)
        one = paths[3]
        np.testing.assert_allclose(fitted.predict_proba([one])[0], fitted.predict_proba(folder)[3],
                                   atol=1e-6)
    assert easytl.list_images(tmp_path / "classes" / "a" / "2.png") == [
        str(tmp_path / "classes" / "a" / "2.png")]


def test_list_images_refuses_what_is_not_a_folder_or_an_image(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        easytl.list_images(tmp_path / "missing")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="not an image"):
        easytl.list_images(tmp_path / "notes.txt")
    with pytest.raises(TypeError, match="in the order given"):
        easytl.list_images(np.zeros((2, 8, 8, 3)))


def test_predict_says_where_its_rows_come_from():
    for method in (TransferClassifier.predict, TransferClassifier.predict_proba):
        assert "list_images" in method.__doc__
