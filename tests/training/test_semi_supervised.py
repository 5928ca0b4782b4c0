"""Learning from unlabeled images: X_unlabeled, unlabeled_label marks in y, the check, and no leak into
validation."""

import numpy as np
import pytest

from easytl import TransferClassifier, make_textures
from easytl.training import semi_supervised
from easytl.data.fit_data import unlabeled_mask
from easytl.training.semi_supervised import decide

from conftest import tiny_kwargs


def clusters(n_per_class, seed, separation=0.8, dim=100, n_classes=5):
    """Gaussian classes in ``dim`` dimensions: with 4 labels per class a probe is noisy, and
    unlabeled images of the same classes help it."""
    rng = np.random.default_rng(seed)
    means = np.random.default_rng(99).normal(0, 1, (n_classes, dim)) * separation * 3 / np.sqrt(dim)
    X = np.concatenate([m + rng.normal(0, 0.5, (n_per_class, dim)) for m in means])
    return X.astype(np.float32), np.repeat(np.arange(n_classes), n_per_class)


def test_unlabeled_marks_are_the_label_asked_for():
    assert unlabeled_mask(np.array([0, -1, 2])) is None           # not asked: -1 is a class
    assert unlabeled_mask(np.array([0, -1, 2]), -1).tolist() == [False, True, False]
    assert unlabeled_mask(np.array(["a", "?", "b"]), "?").tolist() == [False, True, False]
    assert unlabeled_mask(np.array(["a", "b"]), "?") is None
    assert unlabeled_mask(np.array([True, False]), 1) is None     # booleans are not the int 1
    with pytest.raises(ValueError, match="every label in y is unlabeled_label=-1"):
        unlabeled_mask(np.array([-1, -1]), -1)


def test_check_uses_pseudo_labels_that_help_and_refuses_noise():
    X_l, y_l = clusters(4, seed=0)
    X_u, y_u = clusters(100, seed=1)
    decision, positions, labels = decide(X_l, y_l, X_u, 5, seed=0)
    assert decision.used and decision.cv_accuracy_with > decision.cv_accuracy_without
    assert len(positions) == decision.n_pseudo_labeled > 100
    assert (labels == y_u[positions]).mean() > 0.95             # confident ones are right
    noise = np.random.default_rng(2).normal(3, 1, (300, 100)).astype(np.float32)
    decision, positions, _ = decide(X_l, y_l, noise, 5, seed=0)
    assert not decision.used and len(positions) == 0 and "not used" in decision.note


def test_a_perfect_probe_skips_the_unlabeled_images():
    """Nothing to gain when cross-validation already gets every labeled image right (the
    unlabeled images' features are then not even computed)."""
    from easytl.training.semi_supervised import probe_is_perfect
    assert probe_is_perfect(*clusters(4, seed=0, separation=4.0), 5, seed=0)
    assert not probe_is_perfect(*clusters(4, seed=0, separation=0.5), 5, seed=0)


def test_check_needs_two_labels_per_class():
    X_l, y_l = clusters(4, seed=0)
    keep = np.r_[0, 4:len(y_l)]                                  # class 0 keeps one image
    decision, positions, _ = decide(X_l[keep], y_l[keep], clusters(20, 1)[0], 5, seed=0)
    assert not decision.used and len(positions) == 0 and "at least 2" in decision.note


@pytest.fixture(scope="module")
def split_data():
    """32 px textures: 12 labeled per class (with a validation split), 20 unlabeled, 10 test."""
    X, y = make_textures(n_per_class=42, size=32, random_state=3)
    rng = np.random.default_rng(0)
    parts = [rng.permutation(np.flatnonzero(y == c)) for c in np.unique(y)]
    lab = np.concatenate([p[:12] for p in parts])
    unl = np.concatenate([p[12:32] for p in parts])
    test = np.concatenate([p[32:] for p in parts])
    return X[lab], y[lab], X[unl], X[test]


@pytest.fixture(scope="module")
def forced_fits(split_data):
    """Fits whose pseudo-labels are used whatever the check says (the training path), in each
    form: X_unlabeled, -1 in integer y, "?" in string y (unlabeled_label); and the fit without them."""
    X_l, y_l, X_u, X_test = split_data
    codes = np.unique(y_l, return_inverse=True)[1]
    patch = pytest.MonkeyPatch()
    patch.setattr(semi_supervised, "MIN_GAIN_IMAGES", -10**9)
    patch.setattr(semi_supervised, "MIN_GAIN", -1.0)
    patch.setattr(semi_supervised, "probe_is_perfect", lambda *args: False)
    try:
        fits = {"none": TransferClassifier(**tiny_kwargs(epochs=1)).fit(X_l, codes),
                "X_unlabeled": TransferClassifier(**tiny_kwargs(epochs=1)).fit(X_l, codes,
                                                                               X_unlabeled=X_u)}
        X_all = np.concatenate([X_l, X_u])
        fits["-1"] = TransferClassifier(**tiny_kwargs(epochs=1, unlabeled_label=-1)).fit(
            X_all, np.concatenate([codes, np.full(len(X_u), -1)]))
        names = np.array([f"class{c}" for c in codes])
        fits["?"] = TransferClassifier(**tiny_kwargs(epochs=1, unlabeled_label="?")).fit(
            X_all, np.concatenate([names, np.full(len(X_u), "?")]))
    finally:
        patch.undo()
    return fits


def test_x_unlabeled_and_marks_in_y_give_the_same_fit(forced_fits, split_data):
    X_test = split_data[3]
    reference = forced_fits["X_unlabeled"]
    assert reference.plan_["semi_supervised"]["used"]
    assert reference.plan_["semi_supervised"]["n_pseudo_labeled"] > 0
    for form in ("-1", "?"):
        fit = forced_fits[form]
        assert fit.plan_["semi_supervised"] == reference.plan_["semi_supervised"]
        proba = fit.predict_proba(X_test)
        np.testing.assert_allclose(proba, reference.predict_proba(X_test), atol=1e-6)
    assert forced_fits["?"].classes_.tolist() == ["class0", "class1", "class2", "class3"]
    assert forced_fits["-1"].classes_.tolist() == [0, 1, 2, 3]


def test_pseudo_labeled_images_never_enter_validation_or_trust_statistics(forced_fits, split_data):
    without, semi = forced_fits["none"], forced_fits["-1"]
    n_labeled, n_pseudo = len(split_data[1]), semi.plan_["semi_supervised"]["n_pseudo_labeled"]
    # the same labeled images are held out, and none of the unlabeled ones (positions >= n_labeled)
    np.testing.assert_array_equal(semi.validation_indices_, without.validation_indices_)
    assert semi.validation_indices_.max() < n_labeled
    assert semi.plan_["n_val"] == without.plan_["n_val"] > 0
    # pseudo-labeled images train ...
    assert semi.plan_["n_train"] == without.plan_["n_train"] + n_pseudo
    # ... but the novelty threshold rests on labeled images only (cross-fitted training + validation)
    assert semi.unknown_threshold_n_ == without.unknown_threshold_n_ == n_labeled
    assert "pseudo-labeled and added" in semi.history_[0]["semi_supervised"]


def test_useless_unlabeled_images_change_nothing(split_data, monkeypatch):
    """Noise images: the check finds no gain, and the fit equals the one without them."""
    monkeypatch.setattr(semi_supervised, "probe_is_perfect", lambda *args: False)  # run the check
    X_l, y_l, _, X_test = split_data
    noise = np.random.default_rng(0).integers(0, 256, (60, 32, 32, 3), dtype=np.uint8)
    without = TransferClassifier(**tiny_kwargs(val_size=0)).fit(X_l, y_l)
    semi = TransferClassifier(**tiny_kwargs(val_size=0)).fit(X_l, y_l, X_unlabeled=noise)
    decision = semi.plan_["semi_supervised"]
    assert not decision["used"] and decision["n_unlabeled"] == 60
    assert decision["cv_accuracy_with"] is not None                  # the check ran
    assert "not used" in semi.history_[0]["semi_supervised"]
    np.testing.assert_array_equal(semi.predict(X_test), without.predict(X_test))
    np.testing.assert_allclose(semi.predict_proba(X_test), without.predict_proba(X_test), atol=1e-6)


def test_unlabeled_folder_and_errors(split_data, tmp_path):
    from PIL import Image
    X_l, y_l, X_u, _ = split_data
    folder = tmp_path / "unlabeled"
    folder.mkdir()
    for i, image in enumerate(X_u[:10]):
        Image.fromarray((image * 255).round().astype(np.uint8)).save(folder / f"{i}.png")
    clf = TransferClassifier(**tiny_kwargs(epochs=1, val_size=0)).fit(X_l, y_l, X_unlabeled=folder)
    assert clf.plan_["semi_supervised"]["n_unlabeled"] == 10
    loaded = TransferClassifier.load(clf.save(tmp_path / "m.easytl"), backbone=tiny_kwargs()["backbone"])
    assert loaded.plan_["semi_supervised"] == clf.plan_["semi_supervised"]
    with pytest.raises(ValueError, match="single-label"):
        TransferClassifier(**tiny_kwargs(epochs=1, val_size=0)).fit(
            X_l, [(label,) for label in y_l], X_unlabeled=X_u[:4])
    with pytest.raises(ValueError, match="every label in y is unlabeled_label=-1"):
        TransferClassifier(**tiny_kwargs(unlabeled_label=-1)).fit(X_l[:4], np.full(4, -1))


def test_a_table_label_column_is_read_as_before(split_data, tmp_path):
    """-1 in a table's label column is a class, as it always was: only y given as labels follows
    scikit-learn's convention (an empty cell stays an error; README: Learning from unlabeled images)."""
    import pandas as pd
    from PIL import Image
    X_l = split_data[0]
    for i in range(6):
        Image.fromarray((X_l[i] * 255).round().astype(np.uint8)).save(tmp_path / f"{i}.png")
    table = pd.DataFrame({"path": [f"{i}.png" for i in range(6)], "label": [0, 0, 1, 1, -1, -1]})
    clf = TransferClassifier(**tiny_kwargs(epochs=1, val_size=0)).fit(table, "label", root=tmp_path)
    assert clf.classes_.tolist() == [-1, 0, 1] and "semi_supervised" not in clf.plan_


@pytest.mark.slow  # the CLI fits the packaged EfficientNet-Lite0
def test_cli_fit_learns_from_an_unlabeled_folder(digit_folder, tmp_path, capsys):
    import shutil
    from easytl.cli import main
    unlabeled = tmp_path / "unlabeled"
    unlabeled.mkdir()
    for i, path in enumerate(sorted(digit_folder.rglob("*.png"))[:6]):
        shutil.copy(path, unlabeled / f"{i}.png")
    model = tmp_path / "m.easytl"
    assert main(["fit", str(digit_folder), "--out", str(model), "--image-size", "32", "--epochs", "1",
                 "--unlabeled", str(unlabeled), "--verbose", "0"]) == 0
    assert "unlabeled images: 6 unlabeled images" in capsys.readouterr().out
    assert TransferClassifier.load(model).plan_["semi_supervised"]["n_unlabeled"] == 6


def test_unlabeled_files_that_are_labeled_images_are_left_out(digit_folder):
    files = sorted(str(p) for p in digit_folder.rglob("*.png")) + \
        sorted(str(p) for p in digit_folder.rglob("*.PNG"))
    labels = [p.split("/")[-2] for p in files]
    clf = TransferClassifier(**tiny_kwargs(epochs=1))
    with pytest.warns(UserWarning, match="X_unlabeled: left out 24 files that are labeled images.*"
                      "no unlabeled image is left"):
        clf.fit(files, labels, X_unlabeled=digit_folder)
    assert clf.plan_["semi_supervised"]["n_unlabeled"] == 0
    half = files[::2]
    with pytest.warns(UserWarning, match="left out 12 files"):
        clf.fit(half, [p.split("/")[-2] for p in half], X_unlabeled=digit_folder)
    assert clf.plan_["semi_supervised"]["n_unlabeled"] == 12


def test_lr_auto_sweeps_on_the_labeled_training_images_only(textures, monkeypatch):
    X, names = textures
    y = np.unique(names, return_inverse=True)[1]
    seen = []
    real = TransferClassifier.lr_find

    def spy(self, X, y=None, **kwargs):
        seen.append((len(X), sorted(set(np.asarray(y).tolist())), len(kwargs["X_val"])))
        return real(self, X, y, num_steps=20, **kwargs)
    monkeypatch.setattr(TransferClassifier, "lr_find", spy)
    marked = y.copy()
    marked[::4] = -1
    clf = TransferClassifier(**tiny_kwargs(epochs=1, lr="auto", unlabeled_label=-1)).fit(X, marked)
    # the sweep trains on the labeled training images; the held-out ones are only its X_val
    n_val = clf.plan_["n_val"]
    assert n_val > 0 and seen == [(60 - n_val, sorted(set(y.tolist())), n_val)]


def test_a_verbose_fit_says_what_the_unlabeled_images_did(split_data, capsys):
    X_l, y_l, X_u, _ = split_data
    clf = TransferClassifier(**tiny_kwargs(epochs=1, verbose=1)).fit(X_l, y_l, X_unlabeled=X_u[:8])
    err = capsys.readouterr().err
    assert f"easytl unlabeled images: {clf.plan_['semi_supervised']['note']}" in err
