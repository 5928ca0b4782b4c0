"""compare_backbones: the refit is the model that was compared."""

import urllib.error
import warnings

import pytest

from easytl import compare_backbones, make_textures
from easytl import selection


@pytest.fixture(scope="module")
def small_textures():
    return make_textures(n_per_class=10, size=32, random_state=0)


@pytest.mark.slow  # two folds and the refit of a random-init ResNet-18 at 32 px
def test_refit_with_weights_none_trains_the_random_init_model_offline(small_textures, monkeypatch):
    X, y = small_textures

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")
    monkeypatch.setattr("torchvision.models._api.load_state_dict_from_url", offline)
    # Compared with random weights, which need no download: the refit must not fetch any either.
    rows = compare_backbones(X, y, backbones=["resnet18"], weights=None, cv=2, image_size=32,
                             verbose=0, refit=True, epochs=1, mixed_precision="no")
    assert rows[0]["skipped"] is None and rows[0]["pretrained"] is False
    best = rows.best_estimator_
    assert best is not None and best.weights is None and len(best.classes_) == 4


@pytest.mark.slow  # two fine-tuning folds and the refit of a random-init Lite0 at 32 px
def test_refit_has_the_parameters_of_the_fine_tuned_model_compared(small_textures, monkeypatch):
    X, y = small_textures
    compared = []
    real = selection.cross_validate

    def spy(estimator, *args, **kwargs):
        compared.append(estimator.get_params(deep=False))
        return real(estimator, *args, **kwargs)
    monkeypatch.setattr(selection, "cross_validate", spy)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rows = compare_backbones(X, y, backbones=["efficientnet_lite0"], strategy="fine_tune",
                                 weights=None, cv=2, image_size=32, verbose=0, refit=True,
                                 epochs=1, mixed_precision="no", batch_size=8)
    refit = rows.best_estimator_.get_params(deep=False)
    assert len(compared) == 1 and refit["weights"] is None
    assert refit["backbone"] == "efficientnet_lite0" == compared[0]["backbone"]
    # Only the progress display may differ (the folds are silent, the refit shows the user's).
    assert {k: v for k, v in refit.items() if k != "verbose"} == \
        {k: v for k, v in compared[0].items() if k != "verbose"}
