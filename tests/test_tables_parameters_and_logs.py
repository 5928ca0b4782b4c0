"""Tables with label arrays, gray images, parameters as scikit-learn takes them, the ONNX torch
check, and CSV logs across fits."""

import csv
import tomllib
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from easytl import FeatureExtractor, Phase, TransferClassifier, compare_backbones
from easytl.data.sources import as_image_source
from easytl.data.tables import read_table
from easytl.export import export_model
from easytl.params import validate_params

from conftest import InterruptAt, tiny_cnn, tiny_kwargs

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def texture_table(tmp_path, textures):
    """40 texture PNGs and a CSV whose label column says "a"/"b" (not the textures' classes)."""
    X, y = textures
    X, y = X[::2], y[::2]
    rows = []
    for i, image in enumerate(X):
        Image.fromarray((image * 255).astype(np.uint8)).save(tmp_path / f"{i}.png")
        rows.append((f"{i}.png", "ab"[i % 2]))
    with open(tmp_path / "t.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label"])
        writer.writerows(rows)
    return tmp_path / "t.csv", y


# --------------------------------------------------------------------------- 1. a table and a y array

def test_a_label_array_with_a_table_gives_the_labels(texture_table):
    table, y = texture_table
    paths, labels, _ = read_table(table, y)
    assert len(paths) == len(y)
    np.testing.assert_array_equal(labels, y)
    clf = TransferClassifier(**tiny_kwargs(epochs=1)).fit(str(table), y)
    assert sorted(clf.classes_.tolist()) == sorted(set(y.tolist()))
    assert clf.score(str(table), y) == pytest.approx(np.mean(clf.predict(str(table)) == y))
    # as_image_source (X_val, predict paths) reads the array too, and the column by its name
    _, labels = as_image_source(str(table), y, size=32)
    np.testing.assert_array_equal(labels, y)
    _, labels = as_image_source(str(table), "label", size=32)
    assert set(labels.tolist()) == {"a", "b"}


def test_a_label_array_of_another_length_than_the_table_is_refused(texture_table):
    table, y = texture_table
    with pytest.raises(ValueError, match=r"40 rows.*39 labels|39 labels.*40 rows"):
        read_table(table, y[:-1])
    with pytest.raises(ValueError, match=r"40 rows.*39 labels|39 labels.*40 rows"):
        TransferClassifier(**tiny_kwargs(epochs=1)).fit(str(table), y[:-1])


def test_rows_left_out_of_a_table_leave_their_labels_out_of_the_array(texture_table):
    table, y = texture_table
    lines = table.read_text().splitlines()
    lines[3] = "missing.png,a"  # the table's row 3 (its 3rd image) does not exist
    table.write_text("\n".join(lines) + "\n")
    labels_given = np.array([f"img{i}" for i in range(len(y))])
    with pytest.warns(UserWarning, match="left out 1 rows"):
        paths, labels, bad = read_table(table, labels_given, on_bad_image="skip")
    assert len(bad) == 1 and len(paths) == len(y) - 1
    np.testing.assert_array_equal(labels, np.delete(labels_given, 2))
    # label sets and indicator matrices are subset alike
    sets = [(f"c{i % 3}",) for i in range(len(y))]
    with pytest.warns(UserWarning):
        _, labels, _ = read_table(table, sets, on_bad_image="skip")
    assert list(labels) == sets[:2] + sets[3:]
    matrix = np.eye(len(y), 4, dtype=int)
    with pytest.warns(UserWarning):
        _, labels, _ = read_table(table, matrix, on_bad_image="skip")
    np.testing.assert_array_equal(labels, np.delete(matrix, 2, axis=0))


def test_compare_backbones_takes_the_label_array_of_a_table_and_refits_on_it(texture_table):
    table, y = texture_table
    rows = compare_backbones(str(table), y, backbones=[tiny_cnn()], cv=2, image_size=32,
                             verbose=0, refit=True, epochs=1, mixed_precision="no")
    assert rows[0]["skipped"] is None
    assert sorted(rows.best_estimator_.classes_.tolist()) == sorted(set(y.tolist()))


def test_compare_backbones_takes_y_given_with_a_class_folder(tmp_path, textures):
    X, y = textures
    for i, image in enumerate(X[::2]):
        (tmp_path / "only").mkdir(exist_ok=True)
        Image.fromarray((image * 255).astype(np.uint8)).save(tmp_path / "only" / f"{i:02d}.png")
    rows = compare_backbones(str(tmp_path), y[::2], backbones=[tiny_cnn()], cv=2, image_size=32,
                             verbose=0, refit=True, epochs=1, mixed_precision="no")
    assert sorted(rows.best_estimator_.classes_.tolist()) == sorted(set(y.tolist()))


# --------------------------------------------------------------------------- 2. one gray image

def test_one_gray_image_with_a_channel_axis_is_one_image(textures):
    X, y = textures
    gray = X[0].mean(axis=-1, keepdims=True)  # (32, 32, 1)
    source, _ = as_image_source(gray, size=32)
    assert len(source) == 1
    clf = TransferClassifier(**tiny_kwargs(epochs=1)).fit(X, y)
    assert clf.predict(gray).shape == (1,)
    assert clf.predict_proba(torch.from_numpy(gray)).shape == (1, len(clf.classes_))
    # a 2-D array is refused, with the two ways to say what it is
    with pytest.raises(ValueError, match=r"x\[None\].*x\[\.\.\., None\]"):
        clf.predict(gray[..., 0])


# --------------------------------------------------------------------------- 5. refit on label sets

def test_compare_backbones_refits_label_sets_on_the_users_labels(textures):
    X, y = textures
    X, y = X[::2], y[::2]
    sets = [(label, "odd") if i % 2 else (label,) for i, label in enumerate(y.tolist())]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rows = compare_backbones(X, sets, backbones=[tiny_cnn()], cv=2, image_size=32, verbose=0,
                                 refit=True, epochs=1, mixed_precision="no")
    best = rows.best_estimator_
    assert best.multi_label_
    assert best.classes_.tolist() == sorted(set(y.tolist()) | {"odd"})
    assert all(isinstance(row, tuple) for row in best.predict(X[:3]))


# --------------------------------------------------------------------------- 14. parameters

@pytest.mark.parametrize("name, value", [("train_bn", np.True_), ("calibrate", np.False_),
                                         ("cache_features", np.True_), ("multi_label", np.False_),
                                         ("verbose", True), ("verbose", False),
                                         ("random_state", np.int64(2**32 - 1)), ("epochs", np.int32(3))])
def test_what_scikit_learn_accepts_is_accepted(name, value):
    validate_params({name: value})


@pytest.mark.parametrize("value", [-1, 2**32, 1.5])
def test_random_state_out_of_numpys_range_is_refused_up_front(value):
    with pytest.raises(ValueError, match=r"random_state must be an integer >= 0 and <= 4294967295"):
        validate_params({"random_state": value})


def test_numpy_integers_work_as_parameters(textures):
    X, y = textures
    clf = TransferClassifier(**tiny_kwargs(epochs=np.int64(1), batch_size=np.int64(8),
                                           predict_batch_size=np.int32(8), cache_features=True,
                                           image_size=np.int64(32), verbose=True))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(X, y)
    assert len(clf.history_) == 1 and clf.image_size_ == 32
    assert clf.predict(X[:3]).shape == (3,)
    extractor = FeatureExtractor(tiny_cnn(), weights=None, image_size=np.int64(40),
                                 batch_size=np.int64(8), verbose=0).fit(X)
    assert extractor.image_size_ == 40
    assert extractor.transform(X[:3]).shape == (3, 16)


def test_predict_time_parameters_are_checked(textures):
    X, y = textures
    clf = TransferClassifier(**tiny_kwargs(epochs=1)).fit(X, y)
    with pytest.raises(ValueError, match="reject_unknown must be"):
        clf.predict(X[:2], reject_unknown="yes")
    with pytest.raises(ValueError, match="return_proba must be"):
        clf.predict_tta(X[:2], n_augment=2, return_proba="no")
    with pytest.raises(ValueError, match="n_augment must be"):
        clf.predict_tta(X[:2], n_augment=True)
    with pytest.raises(ValueError, match="n_augment must be"):
        clf.report(X[:8], y[:8], n_augment=0)
    assert clf.predict(X[:2], reject_unknown=np.False_).shape == (2,)
    clf.set_params(predict_batch_size=0)
    with pytest.raises(ValueError, match="predict_batch_size must be"):
        clf.predict(X[:2])
    with pytest.raises(ValueError, match="batch_size must be"):
        FeatureExtractor(tiny_cnn(), weights=None, batch_size=0).fit().transform(X[:2])
    with pytest.raises(ValueError, match="device must be"):
        FeatureExtractor(tiny_cnn(), weights=None, device="gpu").fit()


def test_onnx_export_declares_and_checks_the_torch_it_needs(textures, tmp_path, monkeypatch):
    with open(ROOT / "pyproject.toml", "rb") as f:
        project = tomllib.load(f)["project"]
    assert "torch>=2.5" in project["optional-dependencies"]["onnx"]
    X, y = textures
    clf = TransferClassifier(**tiny_kwargs(epochs=1)).fit(X, y)
    monkeypatch.setattr(torch, "__version__", "2.4.1+cpu")
    with pytest.raises(ImportError, match=r"torch >= 2\.5.*2\.4\.1"):
        export_model(clf, tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


# --------------------------------------------------------------------------- 15. the CSV log

def metric_rows(folder: Path) -> list[dict]:
    with open(folder / "easytl" / "metrics.csv") as f:
        return list(csv.DictReader(f))


def test_a_second_fit_in_the_same_logging_dir_keeps_the_first_ones_rows(textures, tmp_path):
    X, y = textures
    first = TransferClassifier(**tiny_kwargs(epochs=2, log_with="csv", logging_dir=tmp_path)).fit(X, y)
    second = TransferClassifier(**tiny_kwargs(epochs=3, log_with="csv", logging_dir=tmp_path)).fit(X, y)
    rows = [r for r in metric_rows(tmp_path) if r["train_loss"]]
    assert [int(r["step"]) for r in rows] == [1, 2, 1, 2, 3]
    losses = first.history_.column("train_loss") + second.history_.column("train_loss")
    assert [float(r["train_loss"]) for r in rows] == pytest.approx(losses)
    assert sum(1 for r in metric_rows(tmp_path) if r["final/epochs"]) == 2


def test_a_resumed_fit_keeps_the_rows_logged_before_the_interruption(textures, tmp_path):
    X, y = textures
    kwargs = tiny_kwargs(schedule=[Phase(4, "all")], epochs=None, log_with="csv",
                         logging_dir=tmp_path / "logs")
    stopped = TransferClassifier(**kwargs, callbacks=[InterruptAt(3)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stopped.fit(X, y, checkpoint_dir=tmp_path / "run")
    resumed = TransferClassifier(**kwargs).fit(X, y, checkpoint_dir=tmp_path / "run", resume=True)
    steps = [int(r["step"]) for r in metric_rows(tmp_path / "logs") if r["train_loss"]]
    assert steps[:2] == [1, 2] and set(steps) == {1, 2, 3, 4}
    last = {int(r["step"]): float(r["train_loss"]) for r in metric_rows(tmp_path / "logs")
            if r["train_loss"]}
    assert last[4] == pytest.approx(resumed.history_[-1]["train_loss"])
