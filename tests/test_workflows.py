"""The notebook's workflows: TTA, reports, backbone comparison, feature caching in grid search."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from torch import nn

from easytl import FeatureExtractor, TransferClassifier, compare_backbones

from conftest import tiny_cnn, tiny_kwargs


class MirrorSymmetric(nn.Module):
    """Features that cannot tell an image from its mirror image."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)

    def forward(self, x):
        return self.conv(x) + self.conv(x.flip(-1)).flip(-1)


@pytest.fixture(scope="module")
def fitted(textures):
    return TransferClassifier(**tiny_kwargs(epochs=2)).fit(*textures)


def test_tta_with_one_view_is_predict(fitted, textures):
    X, _ = textures
    np.testing.assert_array_equal(fitted.predict_tta(X, n_augment=1, return_proba=True),
                                  fitted.predict_proba(X))
    assert (fitted.predict_tta(X, n_augment=1) == fitted.predict(X)).all()


def test_tta_of_a_mirror_invariant_model_equals_plain_prediction(textures):
    X, y = textures
    clf = TransferClassifier(**tiny_kwargs(backbone=MirrorSymmetric(), epochs=1)).fit(X, y)
    np.testing.assert_allclose(clf.predict_tta(X, n_augment=2, return_proba=True),
                               clf.predict_proba(X), atol=1e-6)


def test_tta_is_deterministic_and_averages_real_views(fitted, textures):
    X, _ = textures
    a = fitted.predict_tta(X, n_augment=5, return_proba=True)
    b = fitted.predict_tta(X, n_augment=5, return_proba=True)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (len(X), 4) and np.allclose(a.sum(1), 1, atol=1e-5)
    assert not np.allclose(a, fitted.predict_proba(X))  # the extra views change the average
    with pytest.raises(ValueError, match="n_augment"):
        fitted.predict_tta(X, n_augment=0)


def test_report_has_accuracy_text_and_confusion_matrix(fitted, textures):
    X, y = textures
    result = fitted.report(X, y)
    assert result["accuracy"] == pytest.approx(fitted.score(X, y))
    cm = result["confusion_matrix"]
    assert cm.shape == (4, 4) and cm.sum() == len(X) and np.trace(cm) == round(result["accuracy"] * len(X))
    assert all(label in result["report"] for label in ("dots", "grid", "noise", "stripes"))
    # per-class recall from the confusion matrix; balanced accuracy is their mean
    recall = np.diag(cm) / cm.sum(axis=1)
    assert result["recall"] == pytest.approx(dict(zip(result["labels"], recall)))
    assert result["balanced_accuracy"] == pytest.approx(recall.mean())
    rare = fitted.report(X[y != "dots"], y[y != "dots"])  # a class left out of y
    assert "dots" not in rare["recall"] and len(rare["recall"]) == 3


@pytest.mark.slow  # several pretrained backbones or fits at size
def test_grid_search_reuses_cached_features(textures, tmp_path, monkeypatch):
    import easytl.features as features
    calls = []
    original = features.run_model

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(features, "run_model", counting)
    X, y = textures

    def search(memory):
        calls.clear()
        pipe = make_pipeline(FeatureExtractor(image_size=32, memory=memory),
                             LogisticRegression(max_iter=500))
        GridSearchCV(pipe, {"logisticregression__C": [0.1, 1.0, 10.0]}, cv=3).fit(X, y)
        return len(calls)

    # 3 candidates × 3 folds × (train + test) + the refit; cached: 3 train + 3 test parts + all of X.
    assert search(None) == 19
    assert search(str(tmp_path / "cache")) == 7


def test_compare_backbones_rows_and_offline_skip(textures, monkeypatch):
    X, y = textures
    import urllib.error

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")
    monkeypatch.setattr("torchvision.models._api.load_state_dict_from_url", offline)
    rows = compare_backbones(X, y, backbones=["efficientnet_lite0", "resnet18"], cv=2,
                             image_size=32, verbose=0)
    lite0, resnet = rows  # compared first, skipped last
    assert lite0["backbone"] == "efficientnet_lite0" and lite0["skipped"] is None
    assert 0.5 <= lite0["accuracy_mean"] <= 1.0
    # Features only: easytl backbones counts the ImageNet classifier (1280 x 1000 + 1000) too.
    from easytl import list_backbones
    from easytl.selection import format_rows
    listed = next(r for r in list_backbones() if r["name"] == "efficientnet_lite0")
    assert lite0["params_m"] == pytest.approx(3.37, abs=0.005)
    assert listed["params_m"] - lite0["params_m"] == pytest.approx((1280 * 1000 + 1000) / 1e6, abs=0.01)
    assert "without the ImageNet classifier" in format_rows(rows)
    assert lite0["images_per_s"] > 0 and lite0["pretrained"] is True
    assert resnet["skipped"] and "could not download" in resnet["skipped"]
    assert resnet["accuracy_mean"] is None


def test_compare_backbones_fine_tune_strategy(textures):
    X, y = textures
    rows = compare_backbones(X, y, backbones=[tiny_cnn()], strategy="fine_tune", cv=2,
                             image_size=32, epochs=1, verbose=0, mixed_precision="no")
    assert rows[0]["backbone"] == "Sequential" and 0 <= rows[0]["accuracy_mean"] <= 1
    assert rows[0]["params_m"] == pytest.approx(sum(p.numel() for p in tiny_cnn().parameters()) / 1e6,
                                                abs=0.01)
    with pytest.raises(ValueError, match="strategy"):
        compare_backbones(X, y, strategy="guess")


@pytest.mark.slow  # several pretrained backbones or fits at size
def test_compare_defaults_to_every_backbone_with_weights_here_and_refits_the_winner(textures):
    X, y = textures
    rows = compare_backbones(X[::2], y[::2], cv=2, image_size=32, verbose=0, refit=True,
                             mixed_precision="no")
    compared = [r["backbone"] for r in rows if not r["skipped"]]
    assert sorted(compared) == ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]
    left_out = [r for r in rows if r["skipped"]]
    assert {r["backbone"] for r in left_out} >= {"resnet18", "vit_b_16"}
    assert all("not on this machine" in r["skipped"] for r in left_out)
    means = [r["accuracy_mean"] for r in rows if not r["skipped"]]
    assert means == sorted(means, reverse=True) and rows.best == compared[0]
    assert all(r["fit_seconds"] > 0 and r["images_per_s"] > 0 for r in rows if not r["skipped"])
    best = rows.best_estimator_
    assert best.model_.backbone.name == rows.best and len(best.classes_) == 4
    assert best.score(X, y) >= 0.75
