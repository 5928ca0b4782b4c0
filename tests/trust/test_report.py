"""The HTML error report: what it finds (planted faults), that it renders, how it names images."""

import re
from html import escape

import numpy as np
import pytest
from sklearn.model_selection import train_test_split

from easytl import TransferClassifier, make_textures

from conftest import chromium, lite0, tiny_kwargs


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
    assert escape(clf.history_[-1]["calibration"]["reason"]) in page  # why the temperature is what it is
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
