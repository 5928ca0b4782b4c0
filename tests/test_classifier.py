import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import cross_val_score

from easytl import ModelFileError, TransferClassifier, make_textures

from conftest import tiny_cnn, tiny_kwargs


@pytest.fixture(scope="module")
def fitted():
    X, y = make_textures(n_per_class=20, size=32, random_state=0)
    return TransferClassifier(**tiny_kwargs(epochs=3)).fit(X, y), X, y


def test_predict_keeps_label_values_and_probabilities_sum_to_one(fitted):
    clf, X, y = fitted
    assert list(clf.classes_) == ["dots", "grid", "noise", "stripes"]
    proba = clf.predict_proba(X)
    assert proba.shape == (len(X), 4) and np.allclose(proba.sum(axis=1), 1, atol=1e-5)
    predictions = clf.predict(X)
    assert set(predictions) <= set(clf.classes_)
    assert clf.score(X, y) == pytest.approx(np.mean(predictions == y))
    assert clf.score(X, y) > 0.5  # 4 classes: well above chance after 3 epochs
    features = clf.transform(X[:5])
    assert features.shape == (5, clf.n_features_) == (5, 16) and features.dtype == np.float32


def test_integer_labels_and_unseen_labels(textures):
    X, y = textures
    labels = np.where(y == "stripes", 7, 3)
    clf = TransferClassifier(**tiny_kwargs(epochs=1)).fit(X, labels)
    assert clf.classes_.tolist() == [3, 7] and clf.predict(X[:3]).dtype.kind == "i"
    with pytest.raises(ValueError, match="never seen in fit"):
        clf.score(X[:2], [3, 5])


def test_fit_does_not_modify_the_parameters(textures):
    module = tiny_cnn()
    before = {k: v.clone() for k, v in module.state_dict().items()}
    TransferClassifier(**tiny_kwargs(backbone=module, schedule="fine_tune")).fit(*textures)
    assert all(torch.equal(before[k], v) for k, v in module.state_dict().items())


def test_sklearn_clone_and_params():
    clf = TransferClassifier(backbone="resnet18", lr=0.01, epochs=3)
    twin = clone(clf)
    assert twin.get_params() == clf.get_params() and twin is not clf
    twin.set_params(lr=0.5, head="linear")
    assert (twin.lr, twin.head, clf.lr) == (0.5, "linear", 0.01)
    with pytest.raises(NotFittedError):
        clf.predict(np.zeros((1, 8, 8, 3)))


def test_cross_val_score_with_a_list_of_file_paths(digit_folder):
    paths = sorted(str(p) for p in digit_folder.rglob("*") if p.is_file())
    labels = [p.split("/")[-2] for p in paths]
    clf = TransferClassifier(**tiny_kwargs(epochs=2, val_size=0))
    scores = cross_val_score(clf, paths, labels, cv=2)
    # Same folds by hand: sklearn must hand the estimator the right sub-lists of paths.
    from sklearn.model_selection import StratifiedKFold
    expected = []
    for train, test in StratifiedKFold(2).split(paths, labels):
        fold = clone(clf).fit([paths[i] for i in train], [labels[i] for i in train])
        expected.append(fold.score([paths[i] for i in test], [labels[i] for i in test]))
    np.testing.assert_allclose(scores, expected)


def test_fit_on_a_class_folder(digit_folder):
    clf = TransferClassifier(**tiny_kwargs(epochs=2, val_size=0.25)).fit(str(digit_folder))
    assert clf.classes_.tolist() == ["class_0", "class_1", "class_2"]
    assert 0 <= clf.score(str(digit_folder)) <= 1


@pytest.mark.parametrize("kwargs, message", [
    (dict(head="huge"), "head must be 'auto', 'linear', 'mlp' or a callable; got 'huge'"),
    (dict(schedule="slowly"), "schedule must be 'auto', 'progressive'"),
    (dict(backbone="resnet81"), "resnet18"),
    (dict(batch_size=0), "batch_size"),
    (dict(lr_decay="step"), "lr_decay"),
    (dict(val_size=0.97), "every class needs an image"),
    (dict(early_stopping=2, val_size=0), "needs validation data"),
])
def test_bad_parameters_are_named(textures, kwargs, message):
    with pytest.raises(ValueError, match=message):
        TransferClassifier(**tiny_kwargs(**kwargs)).fit(*textures)


def test_single_class_and_missing_labels(textures):
    X, _ = textures
    with pytest.raises(ValueError, match="single class"):
        TransferClassifier(**tiny_kwargs()).fit(X, ["a"] * len(X))
    with pytest.raises(ValueError, match="y is required"):
        TransferClassifier(**tiny_kwargs()).fit(X)


def test_save_load_gives_identical_predictions(tmp_path, textures):
    X, y = textures
    clf = TransferClassifier(**tiny_kwargs(backbone="resnet18", weights=None, epochs=1,
                                           head="linear")).fit(X, y)
    path = clf.save(tmp_path / "model.easytl")
    assert [p.name for p in tmp_path.iterdir()] == ["model.easytl"]  # one file, no temp left
    loaded = TransferClassifier.load(path)
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    assert loaded.classes_.tolist() == clf.classes_.tolist()
    assert loaded.history_ == clf.history_ and loaded.get_params()["lr"] == clf.lr


def test_load_needs_no_weights_download(tmp_path, textures, monkeypatch):
    X, y = textures
    clf = TransferClassifier(**tiny_kwargs(backbone="efficientnet_lite0", epochs=1,
                                           schedule="feature_extraction")).fit(X, y)
    clf.save(tmp_path / "lite0.easytl")

    def no_weights(*args, **kwargs):
        raise AssertionError("load must not read pretrained weights")
    monkeypatch.setattr("easytl.models.backbones.packaged_weights_path", no_weights)
    monkeypatch.setattr("easytl.models.backbones._torchvision_weights_enum", no_weights)
    loaded = TransferClassifier.load(tmp_path / "lite0.easytl")
    np.testing.assert_allclose(loaded.predict_proba(X), clf.predict_proba(X), atol=1e-6)


def test_custom_backbone_and_head_are_passed_again_at_load(tmp_path, fitted):
    clf, X, _ = fitted
    clf.save(tmp_path / "custom.easytl")
    with pytest.raises(ModelFileError, match="custom backbone"):
        TransferClassifier.load(tmp_path / "custom.easytl")
    loaded = TransferClassifier.load(tmp_path / "custom.easytl", backbone=tiny_cnn())
    np.testing.assert_array_equal(loaded.predict(X), clf.predict(X))


def test_model_files_never_unpickle(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    torch.save({"x": Payload()}, tmp_path / "evil.easytl")
    with pytest.raises(ModelFileError):
        TransferClassifier.load(tmp_path / "evil.easytl")
    assert not marker.exists()
    with pytest.raises(FileNotFoundError):
        TransferClassifier.load(tmp_path / "missing.easytl")


def test_corrupted_file_is_refused(tmp_path, fitted):
    clf, _, _ = fitted
    path = clf.save(tmp_path / "m.easytl")
    data = bytearray(path.read_bytes())
    data[-20] ^= 0xFF  # flip a byte inside the tensor data
    path.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="checksum"):
        TransferClassifier.load(path, backbone=tiny_cnn())


def test_interrupted_save_leaves_previous_file_intact(tmp_path, fitted, monkeypatch):
    clf, _, _ = fitted
    path = clf.save(tmp_path / "m.easytl")
    original = path.read_bytes()

    def crash(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"half")
        raise KeyboardInterrupt
    monkeypatch.setattr("safetensors.torch.save_file", crash)
    with pytest.raises(KeyboardInterrupt):
        clf.save(path)
    assert path.read_bytes() == original
    assert [p.name for p in tmp_path.iterdir()] == ["m.easytl"]


def test_grid_search_over_estimator_params(textures):
    from sklearn.model_selection import GridSearchCV
    search = GridSearchCV(TransferClassifier(**tiny_kwargs(epochs=1, val_size=0)),
                          {"head": ["linear", "mlp"]}, cv=2).fit(*textures)
    assert search.best_params_["head"] in ("linear", "mlp")
    assert search.cv_results_["mean_test_score"].shape == (2,)


def test_files_decoded_in_workers_give_the_same_predictions(digit_folder):
    clf = TransferClassifier(**tiny_kwargs(epochs=1, val_size=0)).fit(str(digit_folder))
    in_process = clf.predict_proba(str(digit_folder))
    clf.set_params(num_workers=2)
    np.testing.assert_array_equal(clf.predict_proba(str(digit_folder)), in_process)


def test_small_data_holds_out_one_image_per_class(textures):
    X, y = textures
    keep = np.r_[0:6, 20:26, 40:46, 60:66]  # 24 images: 10% would be 3 images for 4 classes
    clf = TransferClassifier(**tiny_kwargs(epochs=1, val_size=0.1))
    clf.classes_ = np.unique(y[keep])
    from easytl.data.sources import as_image_source
    source, _ = as_image_source(X[keep])
    encoded = np.unique(y[keep], return_inverse=True)[1]
    from easytl.data.split import stratified_split
    split = stratified_split(source, encoded, 4, 0.1, seed=0)
    assert (len(split.train), len(split.val), sorted(split.val_y)) == (20, 4, [0, 1, 2, 3])
    clf.fit(X[keep], y[keep])  # and fit accepts it, holding out the same images
    np.testing.assert_array_equal(clf.validation_indices_, split.val_positions)
