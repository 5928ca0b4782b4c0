"""Hugging Face datasets as input: an image column and a label column, like a table."""

import numpy as np
import pytest
from PIL import Image

from easytl import TransferClassifier, compare_backbones
from easytl.data.images import EncodedImage
from easytl.data.sources import as_image_source

from conftest import tiny_cnn, tiny_kwargs

datasets = pytest.importorskip("datasets")


@pytest.fixture
def hf_offline(tmp_path, monkeypatch):
    """No network, and the datasets cache in this test's folder."""
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True, raising=False)
    return tmp_path / "hf_cache"


@pytest.fixture
def image_folder(tmp_path, digits):
    """3 classes × 8 small digit images, PNG and JPEG mixed, one sub-folder per class."""
    X, y = digits
    folder = tmp_path / "digits"
    for label, name in enumerate(("zero", "one", "two")):
        (folder / name).mkdir(parents=True)
        for k, index in enumerate(np.flatnonzero(y == label)[:8]):
            image = Image.fromarray((X[index] * 255).astype(np.uint8)).resize((24, 24)).convert("RGB")
            image.save(folder / name / f"{k}.{'jpg' if k % 2 else 'png'}", quality=95)
    return folder


def load_imagefolder(folder, cache_dir):
    return datasets.load_dataset("imagefolder", data_dir=str(folder), split="train",
                                 cache_dir=str(cache_dir))


@pytest.mark.slow  # a few seconds: keeps the fast subset under 5 min
def test_fit_predict_report_on_an_imagefolder_dataset(image_folder, hf_offline):
    ds = load_imagefolder(image_folder, hf_offline)
    assert isinstance(ds.features["label"], datasets.ClassLabel)
    clf = TransferClassifier(**tiny_kwargs(epochs=3)).fit(ds, "label")
    assert clf.classes_.tolist() == ["one", "two", "zero"]  # the names, not the ids
    predictions = clf.predict(ds)
    truth = np.array(ds.features["label"].int2str(list(ds["label"])))
    assert predictions.shape == (len(ds),) and set(predictions) <= set(clf.classes_)
    # The same images as a class folder give the same answers.
    folder_clf = TransferClassifier(**tiny_kwargs(epochs=3)).fit(image_folder)
    np.testing.assert_allclose(clf.predict_proba(ds), folder_clf.predict_proba(ds), atol=1e-6)
    report = clf.report(ds, "label")
    assert report["accuracy"] == pytest.approx(float((predictions == truth).mean()))
    assert clf.report(ds)["accuracy"] == report["accuracy"]  # the label column found by itself
    assert clf.score(ds) == report["accuracy"]
    # fit finds the ClassLabel column without being told.
    auto = TransferClassifier(**tiny_kwargs(epochs=3)).fit(ds)
    assert auto.classes_.tolist() == clf.classes_.tolist()


def test_string_labels_and_stored_image_bytes(image_folder, tmp_path):
    files = sorted(image_folder.rglob("*.*"))
    table = {"picture": [{"bytes": f.read_bytes(), "path": f.name} for f in files],
             "kind": [f.parent.name for f in files]}
    ds = datasets.Dataset.from_dict(table, features=datasets.Features(
        {"picture": datasets.Image(), "kind": datasets.Value("string")}))
    source, labels = as_image_source(ds, "kind", size=32)
    assert isinstance(source.items[0], EncodedImage)
    assert labels.tolist() == [f.parent.name for f in files]
    from_files, _ = as_image_source([str(f) for f in files], size=32)
    assert all((source.load(i) == from_files.load(i)).all() for i in range(len(files)))
    clf = TransferClassifier(**tiny_kwargs(val_size=0)).fit(ds, "kind")
    assert clf.classes_.tolist() == ["one", "two", "zero"]
    rows = compare_backbones(ds, "kind", backbones=[tiny_cnn()], image_size=32, cv=2, verbose=0)
    assert rows[0]["skipped"] is None and 0 <= rows[0]["accuracy_mean"] <= 1


def test_unreadable_rows_and_wrong_inputs_are_named(image_folder, hf_offline):
    files = sorted(image_folder.rglob("*.*"))
    table = {"image": [{"bytes": f.read_bytes(), "path": f.name} for f in files],
             "label": [f.parent.name for f in files]}
    table["image"][3] = {"bytes": b"not an image", "path": "broken.png"}
    ds = datasets.Dataset.from_dict(table, features=datasets.Features(
        {"image": datasets.Image(), "label": datasets.Value("string")}))
    with pytest.raises(ValueError, match=r"broken\.png \(row 3\)"):
        TransferClassifier(**tiny_kwargs()).fit(ds)
    clf = TransferClassifier(**tiny_kwargs(val_size=0, on_bad_image="skip"))
    with pytest.warns(UserWarning, match="left out 1 unreadable"):
        clf.fit(ds)
    with pytest.raises(ValueError, match="no label column 'kind'"):
        TransferClassifier(**tiny_kwargs()).fit(ds, "kind")
    with pytest.raises(TypeError, match=r"pick one split, e.g. X\['train'\]"):
        TransferClassifier(**tiny_kwargs()).fit(datasets.DatasetDict({"train": ds}))
    with pytest.raises(ValueError, match="no image column"):
        TransferClassifier(**tiny_kwargs()).fit(
            datasets.Dataset.from_dict({"image": ["a.png", "b.png"], "label": ["x", "y"]}), "label")
