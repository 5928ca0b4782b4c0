"""int8 exports of a pretrained EfficientNet-Lite0 on a small real task (crops of photos, trained on
the top halves, tested on the bottom halves): labels agree with fp32, probabilities stay close;
`easytl export --quantize int8` writes them."""

import json

import numpy as np
import pytest
from PIL import Image

from easytl import Predictor
from easytl.cli import main

from conftest import drifted_photos, lite0

pytestmark = pytest.mark.slow  # three exports of the 4.7 M parameter Lite0
pytest.importorskip("onnxruntime", reason="onnxruntime is the onnx extra")


@pytest.fixture(scope="module")
def photos_model(tmp_path_factory):
    """Lite0 (linear probe, 128 px) on 4 x 30 photo crops, saved; 80 held-out crops and 20 of
    unrelated photos; a calibration folder of the training crops as PNG files."""
    X, y, X_test, _, unrelated = drifted_photos(n_train=30, n_test=20, size=128)
    clf = lite0(image_size=128).fit(X, y)
    folder = tmp_path_factory.mktemp("photos")
    for i, image in enumerate(X):
        Image.fromarray(image).save(folder / f"{i:03d}.png")  # a flat folder: no labels needed
    path = clf.save(folder.parent / "photos.easytl")
    return clf, path, folder, X_test, unrelated


def test_cli_int8_onnx_agrees_with_fp32(photos_model, tmp_path, capsys):
    from easytl.export import export_model
    clf, model, calibration, test, _ = photos_model
    fp32 = Predictor(export_model(clf, tmp_path / "fp32.onnx"))
    assert main(["export", str(model), str(tmp_path / "int8.onnx"), "--quantize", "int8",
                 "--calibration", str(calibration)]) == 0
    assert "onnx int8 model written to" in capsys.readouterr().out
    int8 = Predictor(tmp_path / "int8.onnx")
    assert int8.quantize_ == "int8" and int8.classes_.tolist() == clf.classes_.tolist()
    assert np.mean(int8.predict(test) == fp32.predict(test)) >= 0.95
    difference = np.abs(int8.predict_proba(test) - fp32.predict_proba(test))
    assert difference.mean() < 0.02 and difference.max() < 0.3
    # the int8 file is smaller: the backbone's weights are int8 (the novelty factor stays fp32)
    assert (tmp_path / "int8.onnx").stat().st_size < 0.6 * (tmp_path / "fp32.onnx").stat().st_size


def test_openvino_int8_agrees_with_the_classifier(photos_model, tmp_path):
    pytest.importorskip("nncf", reason="nncf is the openvino extra")
    clf, model, calibration, test, unrelated = photos_model
    assert main(["export", str(model), str(tmp_path / "ov"), "--format", "openvino",
                 "--quantize", "int8", "--calibration", str(calibration)]) == 0
    int8 = Predictor(tmp_path / "ov")
    meta = json.loads((tmp_path / "ov" / "easytl.json").read_text())
    assert meta["easytl"]["quantize"] == "int8" and meta["classes"] == clf.classes_.tolist()
    assert np.mean(int8.predict(test) == clf.predict(test)) >= 0.95
    assert np.abs(int8.predict_proba(test) - clf.predict_proba(test)).mean() < 0.02
    # reject_unknown answers, with the threshold moved for int8, mostly as the classifier's
    both = np.concatenate([test, unrelated])
    agree = np.mean(int8.predict(both, reject_unknown=True) == clf.predict(both, reject_unknown=True))
    assert agree >= 0.9


def test_cli_refuses_int8_without_calibration_or_for_torchscript(photos_model, tmp_path, capsys):
    model = photos_model[1]
    assert main(["export", str(model), str(tmp_path / "m.onnx"), "--quantize", "int8"]) == 1
    assert "--quantize int8 needs --calibration DIR" in capsys.readouterr().err
    assert main(["export", str(model), str(tmp_path / "m.pt"), "--format", "torchscript",
                 "--quantize", "int8", "--calibration", str(tmp_path)]) == 1
    assert "not torchscript" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_a_model_file_is_not_an_export(photos_model):
    model = photos_model[1]
    with pytest.raises(ValueError, match="load it with TransferClassifier.load"):
        Predictor(model)
