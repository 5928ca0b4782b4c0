"""Trust: "unknown" images (the novelty score and its conformal threshold), and the CLI that
rejects them and writes the report. Calibration: test_calibration.py; the report: test_report.py."""

import re

import numpy as np
import pytest
from sklearn.model_selection import train_test_split

from easytl import TransferClassifier, make_textures
from easytl.trust.statistics import auroc, threshold_for

from conftest import drifted_photos, lite0


@pytest.fixture(scope="module")
def three_textures():
    """Trained on stripes, grid and dots; noise is the class it never saw."""
    X, y = make_textures(n_per_class=60, size=32, random_state=0)
    known = y != "noise"
    X_train, X_test, y_train, y_test = train_test_split(X[known], y[known], test_size=0.4,
                                                        stratify=y[known], random_state=0)
    clf = lite0(val_size=0.3).fit(X_train, y_train)
    return clf, X_test, X[~known]


def test_unknown_class_is_separated_from_held_out_known_images(three_textures):
    clf, X_known, X_unknown = three_textures
    assert auroc(clf.novelty_score(X_known), clf.novelty_score(X_unknown)) >= 0.90
    predicted = clf.predict(X_unknown, reject_unknown=True)
    assert (predicted == "unknown").mean() >= 0.9


@pytest.mark.slow  # several Lite0 passes (~7 s): the fast subset stays under 5 min
def test_false_reject_rate_is_near_the_unknown_rate(digits):
    X, y = digits
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.5, stratify=y,
                                                        random_state=0)
    clf = lite0(unknown_rate=0.1).fit(X_train, y_train)
    rejected = np.mean(clf.predict(X_test, reject_unknown=True) == "unknown")
    assert abs(rejected - 0.1) <= 0.05
    assert clf.predict(X_test, reject_unknown=True, unknown_label=-1).dtype == object


@pytest.fixture(scope="module")
def drifted():
    """Lite0 probed on the top halves of four photos; tested on their bottom halves."""
    X_train, y_train, X_test, y_test, X_unrelated = drifted_photos()
    clf = lite0(image_size=48, val_size=0.1).fit(X_train, y_train)
    return clf, X_train, X_test, y_test, X_unrelated


def test_unknown_rate_holds_on_drifted_photos_and_unrelated_photos_are_still_rejected(drifted):
    clf, X_train, X_test, y_test, X_unrelated = drifted
    assert clf.score(X_test, y_test) >= 0.95  # the drifted photos are known classes, recognised
    rejected = clf.predict(X_test, reject_unknown=True) == "unknown"
    assert rejected.mean() <= 2 * clf.unknown_rate  # was 0.78 with the 12 validation scores
    assert np.mean(clf.predict(X_unrelated, reject_unknown=True) == "unknown") >= 0.9
    # the threshold rests on every training image (cross-fitted) and validation image
    assert clf.unknown_threshold_n_ == len(X_train)
    assert clf.report(X_test, y_test)["unknown"] == {
        "threshold": clf.unknown_threshold_, "rate": 0.05, "n_images": len(X_train)}


def test_calibration_does_not_sharpen_on_a_validation_split_without_errors(drifted):
    clf, X_train, X_test, y_test, X_unrelated = drifted
    assert clf.temperature_ == 1.0  # was the floor, 0.25: every unrelated photo a certainty
    assert clf.predict_proba(X_unrelated).max(axis=1).min() < 0.99
    calibration = clf.report(X_test, y_test)["calibration"]
    assert calibration["ece_after"] <= calibration["ece_before"]


def test_the_unknown_threshold_is_a_conformal_quantile():
    scores = np.arange(1.0, 21.0)  # 20 held-out scores
    # ceil(21 * 0.95) = 20th smallest: a new exchangeable score exceeds it with p <= 1/21
    assert threshold_for(scores, 0.05) == 20.0
    assert threshold_for(scores, 0.25) == 16.0  # ceil(21 * 0.75) = 16
    assert threshold_for(scores[:5], 0.05) == 5.0  # too few scores for 5%: the largest


def test_novelty_statistics_survive_save_and_load(three_textures, tmp_path):
    clf, X_known, X_unknown = three_textures
    loaded = TransferClassifier.load(clf.save(tmp_path / "m.easytl"))
    np.testing.assert_allclose(loaded.novelty_score(X_unknown), clf.novelty_score(X_unknown), rtol=1e-5)
    assert loaded.unknown_threshold_ == clf.unknown_threshold_
    assert loaded.unknown_threshold_n_ == clf.unknown_threshold_n_ > 0
    assert loaded.novelty_.normalize and clf.novelty_.normalize
    assert loaded.temperature_ == clf.temperature_
    loaded.novelty_ = None  # as a model file from before easytl 0.2
    with pytest.raises(ValueError, match="no novelty statistics"):
        loaded.predict(X_known, reject_unknown=True)
    with pytest.raises(ValueError, match="unknown_rate must be a number > 0 and < 1"):
        lite0(unknown_rate=1.0).fit(X_known, ["stripes"] * len(X_known))


def test_cli_predict_rejects_unknown_images_and_evaluate_writes_the_report(tmp_path, capsys,
                                                                           three_textures):
    import csv
    import io

    from PIL import Image

    from easytl.cli import main
    clf, X_known, X_unknown = three_textures
    model = clf.save(tmp_path / "m.easytl")
    new = tmp_path / "new"
    new.mkdir()
    for i in range(4):
        Image.fromarray((X_known[i] * 255).astype(np.uint8)).save(new / f"known_{i}.png")
        Image.fromarray((X_unknown[i] * 255).astype(np.uint8)).save(new / f"unknown_{i}.png")
    assert main(["predict", str(model), str(new), "--reject-unknown", "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert list(rows[0]) == ["path", "label", "probability", "novelty", "rejected_label",
                             "rejected_probability"]
    for row in rows:
        assert (float(row["novelty"]) > clf.unknown_threshold_) == (row["label"] == "unknown")
    assert all(r["label"] == "unknown" for r in rows if "unknown_" in r["path"])
    assert sum(r["label"] == "unknown" for r in rows if "known_" in r["path"]
               and "unknown_" not in r["path"]) <= 1  # 5% of known images may be rejected
    data = tmp_path / "data"
    for i, (image, label) in enumerate(zip(X_known[:12], clf.predict(X_known[:12]))):
        (data / label).mkdir(parents=True, exist_ok=True)
        Image.fromarray((image * 255).astype(np.uint8)).save(data / label / f"{i}.png")
    html = tmp_path / "report.html"
    assert main(["evaluate", str(model), str(data), "--html", str(html), "--train", str(data)]) == 0
    out = capsys.readouterr().out
    assert f"report written to {html}" in out and "calibration: temperature" in out
    page = html.read_text()
    assert "Near-duplicates" in page
    # the CLI passes the folder's files: named relative to the folder, e.g. "dots/3.png"
    assert re.search(r'test <span class="name" title="[^"]+">\w+/\d+\.png</span> ~ train', page)
