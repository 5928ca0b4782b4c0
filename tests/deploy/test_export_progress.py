"""`easytl export` and export_model say what each long step is doing (the ONNX conversion took
27 s, an int8 export 57 s, in silence), with a count where there is one; verbose=0 is quiet.
stderr captured here is not a terminal: each step leaves its lines (easytl.progress)."""

import re

import numpy as np
import pytest

from easytl import TransferClassifier
from easytl.cli import main

from conftest import lite0, tiny_kwargs


@pytest.fixture(scope="module")
def tiny_model():
    rng = np.random.default_rng(0)
    X = (rng.random((24, 32, 32, 3)) * 255).astype(np.uint8)
    clf = TransferClassifier(**tiny_kwargs(epochs=1, val_size=0)).fit(X, [0, 1, 2] * 8)
    return clf, X


@pytest.fixture
def bars_at_once(monkeypatch):
    monkeypatch.setattr("easytl.progress.SHOW_AFTER_SECONDS", 0)


def test_export_model_says_what_it_is_doing_with_the_classifiers_verbose(tiny_model, tmp_path,
                                                                         bars_at_once, capsys):
    from easytl.export import export_model
    clf, _ = tiny_model
    export_model(clf, tmp_path / "m.pt", "torchscript", verbose=1)
    err = capsys.readouterr().err
    assert re.fullmatch(r"tracing the network \(TorchScript\): running for \d+\.\d s\n"
                        r"tracing the network \(TorchScript\): done in \d+\.\d s\n", err), err
    export_model(clf, tmp_path / "quiet.pt", "torchscript")  # the classifier's verbose=0
    assert capsys.readouterr().err == ""


@pytest.mark.slow
def test_cli_export_says_what_it_is_doing_unless_verbose_0(tmp_path, bars_at_once, capsys):
    X = (np.random.default_rng(0).random((12, 32, 32, 3)) * 255).astype(np.uint8)
    model = lite0().fit(X, [0, 1] * 6).save(tmp_path / "m.easytl")  # the CLI loads a named backbone
    capsys.readouterr()
    assert main(["export", str(model), str(tmp_path / "m.pt"), "--format", "torchscript"]) == 0
    err = capsys.readouterr().err
    assert re.search(r"^tracing the network \(TorchScript\): done in \d+\.\d s$", err, re.M), err
    assert main(["export", str(model), str(tmp_path / "q.pt"), "--format", "torchscript",
                 "--verbose", "0"]) == 0
    assert capsys.readouterr().err == ""


@pytest.mark.slow
def test_an_int8_onnx_export_names_its_steps_and_counts_the_calibration_images(
        tiny_model, tmp_path, bars_at_once, capsys):
    pytest.importorskip("onnxruntime", reason="onnxruntime is the onnx extra")
    from easytl.export import export_model
    clf, X = tiny_model
    clf.set_params(verbose=1)
    try:
        export_model(clf, tmp_path / "int8.onnx", quantize="int8", calibration=X)
    finally:
        clf.set_params(verbose=0)
    lines = capsys.readouterr().err.splitlines()
    for step in ("reading the calibration images", "converting the network to ONNX",
                 "quantizing to int8 on 24 calibration images (ONNX Runtime)"):
        assert any(re.fullmatch(rf"{re.escape(step)}: done in \d+\.\d s", line) for line in lines), lines
    if clf.novelty_ is not None:  # the unknown threshold is matched on the int8 graph's scores
        assert any(re.match(r"scoring the 24 calibration images fp32 and int8 .*: 48/48 img in", line)
                   for line in lines), lines
    export_model(clf, tmp_path / "quiet.onnx")  # the classifier's verbose=0
    assert capsys.readouterr().err == ""
