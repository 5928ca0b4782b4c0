"""Trust: calibrated probabilities, "unknown" images, and the HTML report of errors."""

import re

import numpy as np
import pytest
from sklearn.model_selection import train_test_split

from easytl import TransferClassifier, make_textures
from easytl.trust.statistics import (
    auroc, expected_calibration_error, fit_binary_temperatures, fit_temperature, softmax, threshold_for)

from conftest import chromium, drifted_photos, lite0, tiny_kwargs


def test_temperature_scaling_undoes_known_overconfidence():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 2000)
    clean = rng.normal(0, 1, (2000, 4))
    clean[np.arange(2000), labels] += 1.5
    true_t = fit_temperature(clean, labels)
    overconfident = clean * 3.0  # the same model, logits three times too large
    assert fit_temperature(overconfident, labels) == pytest.approx(3.0 * true_t, rel=0.02)
    before = expected_calibration_error(softmax(overconfident), labels)
    after = expected_calibration_error(softmax(overconfident, fit_temperature(overconfident, labels)),
                                       labels)
    assert after < before / 3


@pytest.mark.parametrize("data", ["textures", "digits"])
def test_calibration_lowers_held_out_ece_and_never_changes_a_label(data, digits):
    if data == "textures":
        X, y = make_textures(n_per_class=40, size=32, random_state=0)
    else:
        X, y = digits
        X, y = X[:600], y[:600]
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, stratify=y,
                                                        random_state=0)
    # A tiny network trained hard at a high LR: measurably over- or under-confident.
    clf = TransferClassifier(**tiny_kwargs(schedule="progressive", epochs=None, head="mlp",
                                           lr=0.05, val_size=0.3)).fit(X_train, y_train)
    result = clf.report(X_test, y_test)["calibration"]
    assert result["ece_after"] <= result["ece_before"]  # calibration never makes it worse
    val_x = X_train[clf.validation_indices_]
    if np.all(clf.predict(val_x) == y_train[clf.validation_indices_]):
        assert clf.temperature_ == 1.0  # no validation error: no evidence to sharpen on
    else:
        assert clf.temperature_ != pytest.approx(1.0, abs=0.05)
        assert result["ece_after"] < result["ece_before"]
        assert result["log_loss_after"] < result["log_loss_before"]
    uncalibrated = softmax(clf._run(X_test, lambda model, x: model(x).float()))
    np.testing.assert_array_equal(clf.predict_proba(X_test).argmax(1), uncalibrated.argmax(1))


def test_calibration_can_be_switched_off_and_needs_validation(textures):
    X, y = textures
    assert TransferClassifier(**tiny_kwargs(calibrate=False)).fit(X, y).temperature_ == 1.0
    assert TransferClassifier(**tiny_kwargs(val_size=0)).fit(X, y).temperature_ == 1.0


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


def test_a_temperature_needs_errors_to_rest_on():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 40)
    logits = rng.normal(0, 1, (40, 3))
    logits[np.arange(40), labels] += 4  # every prediction right
    assert np.all(logits.argmax(1) == labels)
    assert fit_temperature(logits, labels) == 1.0
    targets = rng.integers(0, 2, (40, 2))
    assert np.all(fit_binary_temperatures(np.where(targets, 3.0, -3.0), targets) == 1.0)


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


@pytest.fixture(scope="module")
def planted():
    """Textures with planted faults: three mislabelled grid images, three training images
    copied into the test set, and a fifth class drawn exactly like "noise"."""
    X, y = make_textures(n_per_class=30, size=32, random_state=0)
    X2, _ = make_textures(n_per_class=30, size=32, random_state=1)
    twin = X2[-30:]                                    # more uniform noise ...
    X = np.concatenate([X, twin])
    y = np.concatenate([y, np.array(["noise2"] * 30)])  # ... under another name
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.4, stratify=y,
                                                        random_state=0)
    y_test = y_test.copy()
    mislabelled = np.flatnonzero(y_test == "grid")[:3]
    y_test[mislabelled] = "dots"
    X_test = np.concatenate([X_test, X_train[:3]])
    y_test = np.concatenate([y_test, y_train[:3]])
    duplicates = [(len(X_test) - 3 + k, k) for k in range(3)]
    clf = lite0().fit(X_train, y_train)
    return clf, X_train, y_train, X_test, y_test, mislabelled, duplicates


def test_report_finds_the_planted_faults(planted, tmp_path):
    from easytl.trust.report import analyse
    clf, X_train, y_train, X_test, y_test, mislabelled, duplicates = planted
    proba = clf.predict_proba(X_test)
    found = analyse(clf, X_test, y_test, proba, X_train, y_train)
    assert set(mislabelled) <= set(found["suspected_label_errors"])
    pairs = {(i, j) for i, j, _ in found["near_duplicates"]}
    assert set(duplicates) <= pairs
    names = clf.classes_.tolist()
    true, predicted, _ = found["confused_pairs"][0]
    assert {names[true], names[predicted]} == {"noise", "noise2"}
    result = clf.report(X_test, y_test, html=tmp_path / "report.html", X_train=X_train, y_train=y_train)
    page = (tmp_path / "report.html").read_text()
    for heading in ("Per class", "Confusion matrix", "Calibration", "Training history",
                    "Most-confused class pairs", "Worst errors per class", "Suspected label errors",
                    "Near-duplicates"):
        assert f"<h2>{heading}" in page
    assert page.count("Grad-CAM") >= 2
    assert re.findall(r'src="(?!data:image/png;base64,)', page) == []  # every image inlined
    assert result["html"] == tmp_path / "report.html"
    test, train = duplicates[0]  # arrays come from no file: named by their index
    assert f"test #{test} ~ train #{train} (" in page


def test_report_opens_in_headless_chromium_with_every_image(planted, tmp_path):
    playwright, browser_path = chromium()
    clf, X_train, y_train, X_test, y_test, _, _ = planted
    clf.report(X_test, y_test, html=tmp_path / "report.html", X_train=X_train, y_train=y_train)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=browser_path, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        errors = []
        page.on("console", lambda message: errors.append(message.text)
                if message.type == "error" else None)
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto((tmp_path / "report.html").as_uri())
        images = page.evaluate("document.images.length")
        rendered = page.evaluate("Array.from(document.images).filter("
                                 "i => i.complete && i.naturalWidth > 0).length")
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        browser.close()
    assert images >= 20 and rendered == images and errors == []
    assert (tmp_path / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


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


def test_report_names_images_by_file_and_escapes_the_names(digit_folder, digits, tmp_path):
    """Images from files are named by their path (relative to the folder given, or to the
    folder the listed files share), HTML-escaped; arrays keep '#index'."""
    import html
    import shutil

    from PIL import Image

    from easytl.data.sources import read_class_folders
    from easytl.trust.report import analyse
    train_paths, train_labels = read_class_folders(digit_folder)
    clf = TransferClassifier(**tiny_kwargs(epochs=1, val_size=0)).fit(str(digit_folder))
    X, y = digits
    test = tmp_path / "test"
    for label in (0, 1, 2):
        (test / f"class_{label}").mkdir(parents=True)
        for k, index in enumerate(np.flatnonzero(y == label)[8:12]):
            image = Image.fromarray((X[index] * 255).astype(np.uint8)).resize((24, 24))
            image.save(test / f"class_{label}" / f"t{k}.png")
    odd = "dup <1> & co.png"  # a planted near-duplicate, with a name HTML must escape
    shutil.copy(digit_folder / "class_0" / "0.png", test / "class_0" / odd)
    clf.report(str(test), html=tmp_path / "report.html",
               X_train=[str(p) for p in train_paths], y_train=train_labels)
    page = (tmp_path / "report.html").read_text()
    # the duplicate, named on both sides: relative to the test folder and to the training files' folder
    assert re.search(re.escape(html.escape("class_0/" + odd)) + r"</span> ~ train <span[^>]*>"
                     r"class_0/0\.png</span>", page)
    assert odd not in page and "dup &lt;1&gt; &amp; co.png" in page  # escaped, never raw
    # every image the page lists is named by its file
    test_paths, test_labels = read_class_folders(test)
    found = analyse(clf, str(test), test_labels, clf.predict_proba(str(test)))
    listed = found["suspected_label_errors"] + [i for v in found["worst_errors"].values() for i in v]
    assert listed
    for i in listed:
        assert html.escape(test_paths[i].relative_to(test).as_posix()) in page
    assert re.search(r"(>|test |train )#\d+", page) is None  # no bare index for a file
