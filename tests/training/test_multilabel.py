"""Multi-label images, and labels from a table (CSV / DataFrame), in the API and the CLI."""

import csv
import io
import json
import warnings

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import f1_score

from easytl import TransferClassifier, make_texture_mosaics
from easytl.cli import main
from easytl.data.labels import encode_sets

from conftest import tiny_kwargs


@pytest.fixture(scope="module")
def mosaics():
    return make_texture_mosaics(240, size=32, random_state=0)


@pytest.fixture(scope="module")
def fitted(mosaics):
    X, y = mosaics
    return TransferClassifier(**tiny_kwargs(epochs=4, val_size=0.3)).fit(X[:160], y[:160])


def test_mosaic_generator_labels_are_the_textures_shown(mosaics):
    X, y = mosaics
    assert X.shape == (240, 32, 32, 3) and X.min() >= 0 and X.max() <= 1
    sizes = {len(labels) for labels in y}
    assert sizes == {1, 2, 3} and all(list(labels) == sorted(labels) for labels in y)
    assert all(isinstance(label, str) for labels in y for label in labels)
    stripes = np.flatnonzero([labels == ("stripes",) for labels in y])[0]
    assert X[stripes, :, :, 1].mean() < 0.1  # stripes are red: no green anywhere


def test_label_sets_fit_a_multi_label_model_and_predict_in_the_same_form(fitted, mosaics):
    X, y = mosaics
    assert fitted.multi_label_ and fitted.classes_.tolist() == ["dots", "grid", "noise", "stripes"]
    proba = fitted.predict_proba(X[160:])
    assert proba.shape == (80, 4) and not np.allclose(proba.sum(1), 1.0)  # independent sigmoids
    predicted = fitted.predict(X[160:170])
    assert isinstance(predicted, list) and all(isinstance(p, tuple) for p in predicted)
    decided = proba >= fitted.thresholds_
    assert predicted == [tuple(fitted.classes_[np.flatnonzero(r)].tolist()) for r in decided[:10]]
    truth = encode_sets(y[160:], fitted.classes_, "y")
    assert fitted.score(X[160:], y[160:]) == pytest.approx(
        f1_score(truth, decided, average="samples", zero_division=1.0))
    assert fitted.history_[0]["train_loss"] > fitted.history_[-1]["train_loss"]


def test_indicator_matrix_in_indicator_matrix_out(mosaics):
    X, y = mosaics
    indicator = np.array([[int(c in labels) for c in ("dots", "grid", "noise", "stripes")]
                          for labels in y])
    clf = TransferClassifier(**tiny_kwargs(epochs=2)).fit(X[:120], indicator[:120])
    out = clf.predict(X[120:130])
    assert out.shape == (10, 4) and set(np.unique(out)) <= {0, 1}
    assert clf.classes_.tolist() == [0, 1, 2, 3]
    assert 0 <= clf.score(X[120:], indicator[120:]) <= 1


def test_tuned_thresholds_beat_a_fixed_half_on_macro_f1(fitted, mosaics):
    X, y = mosaics
    truth = encode_sets(y[160:], fitted.classes_, "y")
    proba = fitted.predict_proba(X[160:])
    tuned = f1_score(truth, proba >= fitted.thresholds_, average="macro")
    fixed = f1_score(truth, proba >= 0.5, average="macro")
    assert not np.allclose(fitted.thresholds_, 0.5) and tuned > fixed


def test_report_tta_save_load(fitted, mosaics, tmp_path):
    X, y = mosaics
    result = fitted.report(X[160:], y[160:])
    assert {"f1_samples", "f1_micro", "f1_macro", "mean_average_precision"} <= set(result)
    assert result["accuracy"] == result["f1_samples"] and 0 < result["mean_average_precision"] <= 1
    np.testing.assert_allclose(fitted.predict_tta(X[160:], n_augment=1, return_proba=True),
                               fitted.predict_proba(X[160:]))
    assert fitted.predict_tta(X[160:170], n_augment=1) == fitted.predict(X[160:170])  # label sets
    loaded = TransferClassifier.load(fitted.save(tmp_path / "ml.easytl"), backbone=fitted.backbone)
    assert loaded.multi_label_ and loaded.predict(X[160:170]) == fitted.predict(X[160:170])
    np.testing.assert_allclose(loaded.thresholds_, fitted.thresholds_)
    pytest.importorskip("matplotlib")
    from easytl import plot_calibration, plot_history
    plot_calibration(fitted, X[160:], y[160:], path=tmp_path / "calibration.png")
    plot_history(fitted, path=tmp_path / "history.png")
    assert (tmp_path / "calibration.png").stat().st_size > 1000
    assert (tmp_path / "history.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="HTML report covers single-label"):
        fitted.report(X[160:], y[160:], html=tmp_path / "r.html")


def test_multi_label_can_be_forced_and_checked(mosaics):
    X, y = mosaics
    single = np.array([labels[0] for labels in y])
    forced = TransferClassifier(**tiny_kwargs(epochs=1, multi_label=True)).fit(X[:80], single[:80])
    assert forced.multi_label_ and isinstance(forced.predict(X[:3]), list)
    with pytest.raises(ValueError, match="multi_label=False"):
        TransferClassifier(**tiny_kwargs(multi_label=False)).fit(X[:80], y[:80])
    with pytest.raises(ValueError, match="0/1 indicator"):
        TransferClassifier(**tiny_kwargs()).fit(X[:10], np.full((10, 3), 2))


# --------------------------------------------------------------------------- tables

@pytest.fixture
def table_folder(tmp_path, mosaics):
    """images/<split>/<sub>/<n>.png in 3 sub-folders, and labels.csv / tags.csv beside them."""
    X, y = mosaics
    rows = []
    for i in range(60):
        relative = f"{['a', 'b', 'c'][i % 3]}/batch{i % 2}/{i}.png"
        (tmp_path / "images" / relative).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((X[i] * 255).astype(np.uint8)).save(tmp_path / "images" / relative)
        rows.append((relative, y[i][0], ";".join(y[i])))
    for name, column in (("labels.csv", 1), ("tags.csv", 2)):
        with open(tmp_path / name, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["path", "label"])
            writer.writerows((r[0], r[column]) for r in rows)
    return tmp_path, rows


def test_fit_and_predict_from_a_csv_single_and_multi_label(table_folder):
    root, rows = table_folder
    images = root / "images"
    single = TransferClassifier(**tiny_kwargs(epochs=1)).fit(str(root / "labels.csv"), root=images)
    assert not single.multi_label_ and set(single.classes_) <= {"dots", "grid", "noise", "stripes"}
    # A table as X for predict is read like fit's: paths relative to fit's root.
    assert single.predict(str(root / "labels.csv")).shape == (60,)
    with open(root / "tags.csv", "a", newline="") as f:
        csv.writer(f).writerow([rows[0][0], ""])  # with a delimiter, an image of no class
    tags = TransferClassifier(**tiny_kwargs(epochs=1)).fit(str(root / "tags.csv"), root=images,
                                                           label_delim=";")
    assert tags.multi_label_ and len(tags.predict([str(images / rows[0][0])])) == 1
    predicted = tags.predict(str(root / "tags.csv"))  # the delimiter is remembered
    assert len(predicted) == 61 and all(isinstance(p, tuple) for p in predicted)
    result = tags.report(str(root / "tags.csv"))
    truth = [tuple(sorted(r[2].split(";"))) for r in rows] + [()]
    assert result["f1_samples"] == pytest.approx(tags.score(str(root / "tags.csv")))
    assert result["f1_samples"] == pytest.approx(tags.score(
        [str(images / r[0]) for r in rows] + [str(images / rows[0][0])], truth))


def test_a_dataframe_with_a_named_label_column(table_folder):
    pandas = pytest.importorskip("pandas")
    root, rows = table_folder
    frame = pandas.DataFrame({"file": [r[0] for r in rows], "kind": [r[1] for r in rows]})
    clf = TransferClassifier(**tiny_kwargs(epochs=1)).fit(frame, y="kind", root=root / "images")
    assert len(clf.classes_) >= 2


def test_bad_rows_are_named_or_skipped(table_folder):
    root, rows = table_folder
    with open(root / "bad.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label"])
        writer.writerows((r[0], r[1]) for r in rows[:20])
        writer.writerow(["a/missing.png", "dots"])          # line 22
        writer.writerow([rows[20][0], ""])                  # line 23
        writer.writerow(["../outside.png", "dots"])         # line 24
    (root / "outside.png").write_bytes(b"")
    with pytest.raises(ValueError) as caught:
        TransferClassifier(**tiny_kwargs(epochs=1)).fit(str(root / "bad.csv"), root=root / "images")
    message = str(caught.value)
    for expected in ("row 22 (a/missing.png): file not found", "row 23", "empty label",
                     "row 24 (../outside.png): path outside root"):
        assert expected in message
    with pytest.warns(UserWarning, match="left out 3 rows"):
        clf = TransferClassifier(**tiny_kwargs(epochs=1, val_size=0, on_bad_image="skip")).fit(
            str(root / "bad.csv"), root=root / "images")
    assert len(clf.skipped_images_) == 3


@pytest.mark.slow  # a few seconds: keeps the fast subset under 5 min
def test_cli_fits_predicts_and_evaluates_from_a_table(table_folder, tmp_path, capsys):
    root, rows = table_folder
    model = tmp_path / "tags.easytl"
    args = ["--image-size", "32", "--epochs", "2", "--verbose", "0", "--val-size", "0.2"]
    assert main(["fit", str(root / "images"), "--labels", str(root / "tags.csv"), "--label-delim",
                 ";", "--out", str(model), *args]) == 0
    out = capsys.readouterr().out
    assert "sample-averaged F1" in out and "model written" in out
    assert main(["predict", str(model), str(root / "images" / "a"), "--format", "json"]) == 0
    predictions = json.loads(capsys.readouterr().out)
    assert len(predictions) == 20 and all("labels" in p and "probabilities" in p for p in predictions)
    assert main(["predict", str(model), str(root / "images" / "b"), "--format", "csv"]) == 0
    table = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert all(len(r["label"].split(";")) == len(r["probability"].split(";")) for r in table if r["label"])
    assert main(["evaluate", str(model), str(root / "images"), "--labels", str(root / "tags.csv"),
                 "--label-delim", ";"]) == 0
    assert "mean average precision" in capsys.readouterr().out


def test_compare_backbones_scores_multi_label_by_sample_f1(mosaics):
    from easytl import compare_backbones
    X, y = mosaics
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rows = compare_backbones(X[:60], y[:60], backbones=["efficientnet_lite0"], cv=2,
                                 image_size=32, verbose=0)
    assert 0 <= rows[0]["accuracy_mean"] <= 1 and rows[0]["skipped"] is None


@pytest.mark.slow  # a few seconds: keeps the fast subset under 5 min
def test_compare_backbones_reads_a_multi_label_table_like_its_paths_and_label_sets(table_folder):
    from easytl import compare_backbones
    root, rows = table_folder
    options = dict(backbones=["efficientnet_lite0"], cv=2, image_size=32, verbose=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from_table = compare_backbones(str(root / "tags.csv"), root=root / "images", label_delim=";",
                                       **options)
        from_lists = compare_backbones([str(root / "images" / r[0]) for r in rows],
                                       [tuple(r[2].split(";")) for r in rows], **options)
    assert from_table[0]["accuracy_mean"] == pytest.approx(from_lists[0]["accuracy_mean"])


def test_tuned_threshold_sits_in_the_middle_of_the_widest_gap():
    from easytl.training.tasks import tune_thresholds
    # positives saturated at 1.0, negatives at most 0.3: every t in (0.3, 1.0] is perfect
    proba = np.array([[1.0], [1.0], [0.3], [0.1], [0.2]])
    truth = np.array([[1], [1], [0], [0], [0]])
    assert tune_thresholds(proba, truth)[0] == pytest.approx(0.65)
    # one positive at 0.55 below a negative at 0.6: the best F1 splits at 0.55
    proba = np.array([[0.9], [0.55], [0.6], [0.2]])
    truth = np.array([[1], [1], [0], [0]])
    threshold = tune_thresholds(proba, truth)[0]
    assert 0.2 < threshold <= 0.55 and threshold == pytest.approx((0.2 + 0.55) / 2)
