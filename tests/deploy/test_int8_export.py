"""int8 exports of a pretrained EfficientNet-Lite0 (a linear probe on the synthetic textures,
48 px): labels agree with fp32, probabilities stay close, and ``reject_unknown`` calls about as
many held-out images unknown as the classifier does while still rejecting drifted and unrelated
ones; `easytl export --quantize int8` writes them. The OpenVINO export (NNCF) runs in a child
process (tests/openvino_int8_run.py)."""

import contextlib
import importlib.util
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from easytl import Predictor, make_textures
from easytl.cli import main

from conftest import drifted_photos, lite0

pytestmark = pytest.mark.slow  # fits and exports the 4.7 M parameter Lite0 (twice with OpenVINO)
pytest.importorskip("onnxruntime", reason="onnxruntime is the onnx extra")

SIZE = 48


@pytest.fixture(scope="module")
def textures_model(tmp_path_factory):
    """Lite0 (linear probe) on 4 x 40 textures, saved, with its training images as a flat PNG
    folder (the calibration images); 200 new in-distribution textures; 120 drifted ones (more
    pixel noise: 0.2 and 0.3 instead of 0.05); 20 crops of unrelated photos."""
    X, y = make_textures(40, size=SIZE, random_state=0)
    clf = lite0(image_size=SIZE).fit(X, y)
    folder = tmp_path_factory.mktemp("textures")
    calibration = folder / "calibration"
    calibration.mkdir()
    for i, image in enumerate(X):
        Image.fromarray(np.round(image * 255).astype(np.uint8)).save(calibration / f"{i:03d}.png")
    drifted = np.concatenate([make_textures(15, size=SIZE, noise=noise, random_state=2)[0]
                              for noise in (0.2, 0.3)])
    return SimpleNamespace(clf=clf, path=clf.save(folder / "textures.easytl"), calibration=calibration,
                           held_out=make_textures(50, size=SIZE, random_state=1)[0], drifted=drifted,
                           unrelated=drifted_photos(size=SIZE)[4], folder=folder)


@pytest.fixture(scope="module")
def int8_onnx(textures_model):
    """`easytl export --quantize int8` of the textures model: (path, what it printed)."""
    path = textures_model.folder / "int8.onnx"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["export", str(textures_model.path), str(path), "--quantize", "int8",
                     "--calibration", str(textures_model.calibration)])
    assert code == 0
    return path, out.getvalue()


def unknown_rate(labels) -> float:
    return float(np.mean(np.asarray(labels, dtype=object) == "unknown"))


def assert_rejects_like_the_classifier(clf, rejected: dict) -> None:
    """``rejected``: int8 ``predict(X, reject_unknown=True)`` labels of the textures_model sets."""
    fp32 = {name: unknown_rate(clf.predict(images, reject_unknown=True))
            for name, images in rejected["images"].items()}
    int8 = {name: unknown_rate(labels) for name, labels in rejected["labels"].items()}
    # in-distribution images: at most twice the classifier's rate (its target is 5%); the
    # former sqrt(t² + σ²) threshold called 14% of them unknown here (fp32: 3.5%)
    assert int8["held_out"] <= max(2 * fp32["held_out"], 0.05), (int8, fp32)
    # drifted images still rejected comparably: one threshold for all classes, pulled up by the
    # class int8 rounds worst (uniform noise), let most of them through (7% against 55%)
    assert fp32["drifted"] >= 0.5 and int8["drifted"] >= 0.75 * fp32["drifted"], (int8, fp32)
    assert int8["unrelated"] == 1.0 and fp32["unrelated"] == 1.0


def test_cli_int8_onnx_agrees_with_fp32(textures_model, int8_onnx):
    path, printed = int8_onnx
    clf = textures_model.clf
    assert "onnx int8 model written to" in printed
    int8 = Predictor(path)
    assert int8.quantize_ == "int8" and int8.classes_.tolist() == clf.classes_.tolist()
    test = textures_model.held_out
    assert np.mean(int8.predict(test) == clf.predict(test)) >= 0.95
    difference = np.abs(int8.predict_proba(test) - clf.predict_proba(test))
    assert difference.mean() < 0.02 and difference.max() < 0.3
    # the int8 file is smaller than an fp32 one: the backbone's weights are int8 (the novelty
    # statistics, a 1280 x 1280 factor, stay fp32)
    n_fp32 = (sum(p.numel() for p in clf.model_.parameters()) + clf.novelty_.precision.size
              + clf.novelty_.means.size)
    assert path.stat().st_size < 0.6 * 4 * n_fp32
    # the features output the threshold was re-fitted on is not in the file
    assert int8._outputs == ["probabilities", "novelty"]


def test_int8_onnx_rejects_unknown_images_as_the_classifier_does(textures_model, int8_onnx):
    int8 = Predictor(int8_onnx[0])
    images = {name: getattr(textures_model, name) for name in ("held_out", "drifted", "unrelated")}
    assert_rejects_like_the_classifier(textures_model.clf, {
        "images": images,
        "labels": {name: int8.predict(X, reject_unknown=True) for name, X in images.items()}})
    info = int8.metadata_["easytl"]
    assert info["unknown_threshold_fp32"] == pytest.approx(textures_model.clf.unknown_threshold_)
    assert len(info["unknown_thresholds"]) == len(int8.classes_)  # one per predicted class


def test_openvino_int8_agrees_with_the_classifier(textures_model):
    """In a child process: a native crash there fails this test with its stderr."""
    for package in ("openvino", "nncf"):
        if importlib.util.find_spec(package) is None:  # not imported here: see the docstring
            pytest.skip(f"{package} is the openvino extra")
    clf, folder = textures_model.clf, textures_model.folder
    images = {name: getattr(textures_model, name) for name in ("held_out", "drifted", "unrelated")}
    np.savez(folder / "sets.npz", **images)
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, str(root / "tests" / "deploy" / "openvino_int8_run.py"),
                           str(textures_model.path), str(textures_model.calibration),
                           str(folder / "sets.npz"), str(folder / "ov.json")],
                          capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, f"exit {done.returncode}; stderr:\n{done.stderr[-4000:]}"
    result = json.loads((folder / "ov.json").read_text())
    assert result["quantize"] == "int8" and result["classes"] == clf.classes_.tolist()
    assert result["metadata"]["easytl"]["quantize"] == "int8"
    answers = result["answers"]
    test = textures_model.held_out
    assert np.mean(np.asarray(answers["held_out"]["labels"]) == clf.predict(test)) >= 0.95
    assert np.abs(np.asarray(answers["held_out"]["proba"]) - clf.predict_proba(test)).mean() < 0.02
    assert_rejects_like_the_classifier(clf, {
        "images": images, "labels": {name: a["rejected"] for name, a in answers.items()}})


def test_cli_refuses_int8_without_calibration_or_for_torchscript(textures_model, tmp_path, capsys):
    model = textures_model.path
    assert main(["export", str(model), str(tmp_path / "m.onnx"), "--quantize", "int8"]) == 1
    assert "--quantize int8 needs --calibration DIR" in capsys.readouterr().err
    assert main(["export", str(model), str(tmp_path / "m.pt"), "--format", "torchscript",
                 "--quantize", "int8", "--calibration", str(tmp_path)]) == 1
    assert "not torchscript" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_a_model_file_is_not_an_export(textures_model):
    with pytest.raises(ValueError, match="load it with TransferClassifier.load"):
        Predictor(textures_model.path)
