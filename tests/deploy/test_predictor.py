"""easytl.Predictor runs any export with the classifier's answers; int8 exports stay close to fp32."""

import json

import numpy as np
import pytest
from PIL import Image

from easytl import Predictor, TransferClassifier
from easytl.export import export_model

from conftest import tiny_kwargs

pytest.importorskip("onnxruntime", reason="onnxruntime is the onnx extra")


def uint8(X):
    return (np.asarray(X) * 255).round().astype(np.uint8)


@pytest.fixture(scope="module")
def tiny(textures, tmp_path_factory):
    """A tiny fitted classifier (with novelty statistics), its fp32 ONNX export and test images."""
    X, y = textures
    clf = TransferClassifier(**tiny_kwargs()).fit(X, y)
    folder = tmp_path_factory.mktemp("tiny")
    path = export_model(clf, folder / "tiny.onnx")
    images = uint8(X[::4])
    return clf, path, images, folder


def test_fp32_onnx_predictor_equals_the_classifier(tiny):
    clf, path, images, _ = tiny
    predictor = Predictor(path)
    np.testing.assert_allclose(predictor.predict_proba(images), clf.predict_proba(images),
                               rtol=0, atol=1e-4)
    np.testing.assert_allclose(predictor.novelty_score(images), clf.novelty_score(images),
                               rtol=1e-4, atol=1e-3)
    assert predictor.predict(images).tolist() == clf.predict(images).tolist()
    assert predictor.classes_.tolist() == clf.classes_.tolist()
    assert predictor.unknown_threshold_ == pytest.approx(clf.unknown_threshold_)
    assert predictor.image_size_ == clf.image_size_ and predictor.quantize_ is None


def test_reject_unknown_answers_match_the_classifier(tiny):
    clf, path, images, _ = tiny
    rng = np.random.default_rng(0)
    odd = np.concatenate([images, rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8),
                          np.full((2, 32, 32, 3), 255, np.uint8)])
    expected = clf.predict(odd, reject_unknown=True, unknown_label="?")
    assert "?" in expected.tolist()  # the random images are unknown: the test can tell
    got = Predictor(path).predict(odd, reject_unknown=True, unknown_label="?")
    assert got.tolist() == expected.tolist()


def test_predictor_reads_files_and_folders_as_predict_does(tiny):
    clf, path, images, folder = tiny
    files = []
    for i, image in enumerate(images[:6]):
        files.append(folder / "pngs" / f"{i}.png")
        files[-1].parent.mkdir(exist_ok=True)
        Image.fromarray(image).resize((40, 40)).save(files[-1])  # not the model's size
    predictor = Predictor(path)
    for X in ([str(f) for f in files], folder / "pngs"):
        np.testing.assert_allclose(predictor.predict_proba(X), clf.predict_proba(X), rtol=0, atol=1e-4)


def test_torchscript_predictor_equals_the_classifier(tiny, tmp_path):
    clf, _, images, _ = tiny
    predictor = Predictor(export_model(clf, tmp_path / "tiny.pt", "torchscript"))
    np.testing.assert_allclose(predictor.predict_proba(images), clf.predict_proba(images),
                               rtol=0, atol=1e-4)
    assert predictor.predict(images, reject_unknown=True).tolist() == \
        clf.predict(images, reject_unknown=True).tolist()


def test_int8_onnx_is_quantized_carries_the_metadata_and_stays_close(tiny, tmp_path):
    import onnx
    from easytl import make_textures
    clf, fp32_path, images, _ = tiny
    calibration, _ = make_textures(n_per_class=10, size=32, random_state=1)
    path = export_model(clf, tmp_path / "tiny-int8.onnx", quantize="int8", calibration=calibration)
    ops = {node.op_type for node in onnx.load(path).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    int8, fp32 = Predictor(path), Predictor(fp32_path)
    assert int8.quantize_ == "int8" and int8.classes_.tolist() == clf.classes_.tolist()
    info = int8.metadata_["easytl"]
    assert info["unknown_threshold_fp32"] == pytest.approx(clf.unknown_threshold_)
    # re-fitted for int8 (tests/test_int8_export.py checks what they reject): one per class
    assert np.isfinite(info["unknown_threshold"]) and info["unknown_threshold"] > 0
    assert int8.unknown_thresholds_.shape == (len(clf.classes_),) and (int8.unknown_thresholds_ > 0).all()
    assert info["temperature"] == pytest.approx(clf.temperature_)
    assert np.mean(int8.predict(images) == fp32.predict(images)) >= 0.95
    assert np.abs(int8.predict_proba(images) - fp32.predict_proba(images)).max() < 0.1


@pytest.mark.slow  # imports OpenVINO and exports the graph again (~10 s)
def test_openvino_predictor_equals_the_classifier(tiny, tmp_path):
    pytest.importorskip("openvino", reason="openvino is the openvino extra")
    clf, _, images, _ = tiny
    folder = export_model(clf, tmp_path / "tiny-ov", "openvino")
    assert {p.name for p in folder.iterdir()} == {"model.xml", "model.bin", "easytl.json"}
    assert json.loads((folder / "easytl.json").read_text())["classes"] == clf.classes_.tolist()
    predictor = Predictor(folder)
    np.testing.assert_allclose(predictor.predict_proba(images), clf.predict_proba(images),
                               rtol=0, atol=1e-4)
    assert predictor.predict(images, reject_unknown=True).tolist() == \
        clf.predict(images, reject_unknown=True).tolist()


# --------------------------------------------------------------------------- errors

def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.onnx does not exist"):
        Predictor(tmp_path / "missing.onnx")


def test_files_that_are_not_exports_are_refused_by_name(tiny, tmp_path):
    clf, _, _, _ = tiny
    text = tmp_path / "notes.onnx"
    text.write_text("not a model")
    with pytest.raises(ValueError, match="notes.onnx is not an easytl export"):
        Predictor(text)
    saved = clf.save(tmp_path / "m.easytl")
    with pytest.raises(ValueError, match="easytl model file: load it with TransferClassifier.load"):
        Predictor(saved)
    with pytest.raises(ValueError, match="without model.xml"):
        Predictor(tmp_path)


def test_onnx_without_easytl_metadata_is_refused(tiny, tmp_path):
    import onnx
    _, path, _, _ = tiny
    model = onnx.load(path)
    del model.metadata_props[:]
    onnx.save(model, tmp_path / "plain.onnx")
    with pytest.raises(ValueError, match="carries no easytl metadata"):
        Predictor(tmp_path / "plain.onnx")


def test_quantize_is_refused_for_torchscript_and_checked_before_writing(tiny, tmp_path):
    clf, _, images, _ = tiny
    with pytest.raises(ValueError, match="TorchScript exports are fp32 only"):
        export_model(clf, tmp_path / "m.pt", "torchscript", quantize="int8", calibration=images)
    with pytest.raises(ValueError, match="quantize must be None or 'int8'"):
        export_model(clf, tmp_path / "m.onnx", quantize="int4", calibration=images)
    with pytest.raises(ValueError, match="needs calibration images"):
        export_model(clf, tmp_path / "m.onnx", quantize="int8")
    with pytest.raises(ValueError, match="calibration is empty"):
        export_model(clf, tmp_path / "m.onnx", quantize="int8", calibration=images[:0])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no image files"):
        export_model(clf, tmp_path / "m.onnx", quantize="int8", calibration=tmp_path / "empty")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]  # nothing written


def test_reject_unknown_needs_a_novelty_output(tiny, tmp_path):
    clf, _, images, _ = tiny
    novelty, clf.novelty_ = clf.novelty_, None  # as a model file from easytl 0.1
    try:
        path = export_model(clf, tmp_path / "old.pt", "torchscript")
    finally:
        clf.novelty_ = novelty
    predictor = Predictor(path)
    assert predictor.predict(images).tolist() == clf.predict(images).tolist()
    with pytest.raises(ValueError, match="has no novelty output"):
        predictor.predict(images, reject_unknown=True)
