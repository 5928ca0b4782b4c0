"""ONNX and TorchScript exports of the larger packaged backbones reproduce predict_proba."""

import json

import numpy as np
import pytest
import torch

from easytl import TransferClassifier
from easytl.export import export_model

pytestmark = pytest.mark.slow  # four exports of 5-6 M parameter models


@pytest.fixture(scope="module", params=["efficientnet_lite1", "efficientnet_lite2"])
def fitted(request, textures):
    X, y = textures
    clf = TransferClassifier(request.param, image_size=32, schedule="feature_extraction", epochs=1,
                             mixed_precision="no", random_state=0, verbose=0).fit(X, y)
    return clf, (X[:6] * 255).round().astype(np.uint8)


def run_export(clf, images, path, fmt, keys=("classes",)):
    """Export ``clf``, run the file on ``images``; return its output and its metadata ``keys``."""
    export_model(clf, path, fmt)
    if fmt == "onnx":
        ort = pytest.importorskip("onnxruntime", reason="onnxruntime is the onnx extra")
        session = ort.InferenceSession(str(path))
        meta = session.get_modelmeta().custom_metadata_map
        return session.run(None, {"images": images})[0], {k: meta[k] for k in keys}
    files = {f"{k}.json": "" for k in keys}
    got = torch.jit.load(str(path), _extra_files=files)(torch.from_numpy(images)).numpy()
    return got, {k.removesuffix(".json"): v for k, v in files.items()}


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_equals_predict_proba(fitted, tmp_path, fmt):
    clf, images = fitted
    got, meta = run_export(clf, images, tmp_path / f"model.{fmt}", fmt)
    np.testing.assert_allclose(got, clf.predict_proba(images), rtol=0, atol=1e-4)
    assert json.loads(meta["classes"]) == clf.classes_.tolist()


def test_auto_size_is_bounded_by_each_backbones_pretrained_size(textures):
    from easytl import FeatureExtractor
    X, _ = textures  # 32 px images: x6 = 192, under every pretrained size
    photos = np.zeros((2, 300, 400, 3), np.uint8)
    for name, pretrained in (("efficientnet_lite1", 240), ("efficientnet_lite2", 260)):
        assert FeatureExtractor(name).fit(X).image_size_ == 192
        assert FeatureExtractor(name).fit(photos).image_size_ == pretrained


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_multi_label_export_has_sigmoids_and_thresholds(tmp_path, fmt):
    from easytl import make_texture_mosaics
    X, y = make_texture_mosaics(80, size=32, random_state=0)
    clf = TransferClassifier("efficientnet_lite0", image_size=32, schedule="feature_extraction",
                             epochs=1, mixed_precision="no", random_state=0, verbose=0).fit(X, y)
    images = (X[:6] * 255).round().astype(np.uint8)
    got, meta = run_export(clf, images, tmp_path / f"ml.{fmt}", fmt, ("multi_label", "thresholds"))
    np.testing.assert_allclose(got, clf.predict_proba(images), rtol=0, atol=1e-4)
    assert json.loads(meta["multi_label"]) is True
    assert json.loads(meta["thresholds"]) == pytest.approx(clf.thresholds_.tolist())
