"""What a first-time user hits: Ctrl-C, file modes, misleading messages, slow help, silence."""

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from easytl import TransferClassifier
from easytl.cli import main

from conftest import tiny_kwargs

FIT = ["--image-size", "32", "--epochs", "3", "--schedule", "feature_extraction", "--verbose", "0",
       "--val-size", "0.25"]


def cli(*args):
    try:
        return main([str(a) for a in args])
    except SystemExit as exc:  # argparse's own exits (--help, --version, usage errors)
        return exc.code


def test_ctrl_c_in_cli_fit_exits_130_and_leaves_the_model_file_alone(digit_folder, tmp_path, capsys,
                                                                     interrupt_at):
    out = tmp_path / "good.easytl"
    out.write_bytes(b"the user's previous good model")
    interrupt_at(2)  # one epoch finished
    assert cli("fit", digit_folder, "--out", out, *FIT) == 130
    captured = capsys.readouterr()
    assert "easytl: interrupted" in captured.err and captured.out == ""
    assert out.read_bytes() == b"the user's previous good model"

    # Asked to keep the best weights so far: written, and stdout says so.
    interrupt_at(2)
    assert cli("fit", digit_folder, "--out", out, *FIT, "--save-interrupted") == 130
    captured = capsys.readouterr()
    assert "interrupted after 1 epoch;" in captured.out and f"written to {out}" in captured.out
    assert TransferClassifier.load(out).interrupted_


def test_ctrl_c_before_the_first_epoch_never_writes_an_untrained_model(digit_folder, tmp_path, capsys,
                                                                       interrupt_at):
    out = tmp_path / "m.easytl"
    interrupt_at(1)
    assert cli("fit", digit_folder, "--out", out, *FIT, "--save-interrupted") == 130
    assert "before the first epoch" in capsys.readouterr().err and not out.exists()
    interrupt_at(1)
    with pytest.warns(UserWarning, match="NOT trained"):
        clf = TransferClassifier(**tiny_kwargs()).fit(str(digit_folder))
    assert clf.interrupted_ and clf.history_ == []
    with pytest.raises(ValueError, match="not trained"):
        clf.save(tmp_path / "untrained.easytl")
    assert not (tmp_path / "untrained.easytl").exists()


@pytest.fixture(scope="module")
def fitted(textures):
    return TransferClassifier(**tiny_kwargs(backbone="efficientnet_lite0", epochs=1,
                                            schedule="feature_extraction")).fit(*textures)


def test_model_files_and_exports_get_the_usual_file_mode(fitted, tmp_path):
    from easytl.export import export_model
    old = os.umask(0o022)
    try:
        fitted.save(tmp_path / "m.easytl")
        export_model(fitted, tmp_path / "m.pt", "torchscript")
        os.umask(0o002)
        fitted.save(tmp_path / "group.easytl")
    finally:
        os.umask(old)
    assert (tmp_path / "m.easytl").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "m.pt").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "group.easytl").stat().st_mode & 0o777 == 0o664
    os.chmod(tmp_path / "m.easytl", 0o640)  # replacing a file keeps the mode it had
    fitted.save(tmp_path / "m.easytl")
    assert (tmp_path / "m.easytl").stat().st_mode & 0o777 == 0o640


def test_an_unwritable_out_fails_before_training(digit_folder, tmp_path, capsys, monkeypatch, fitted):
    monkeypatch.setattr(TransferClassifier, "fit", lambda *a, **k: pytest.fail("training started"))
    assert cli("fit", digit_folder, "--out", tmp_path, *FIT) == 1
    assert "is a directory" in capsys.readouterr().err
    with pytest.raises(IsADirectoryError, match="is a directory"):
        fitted.save(tmp_path)


def test_messages_name_the_real_problem(digit_folder, tmp_path, capsys, fitted):
    from easytl import ModelFileError
    with pytest.raises(ModelFileError, match="is a directory, not a model file"):
        TransferClassifier.load(tmp_path)
    assert cli("predict", tmp_path, digit_folder) == 1
    assert "is a directory, not a model file" in capsys.readouterr().err

    fitted.save(tmp_path / "m.easytl")
    (tmp_path / "empty").mkdir()
    assert cli("predict", tmp_path / "m.easytl", tmp_path / "empty") == 1
    err = capsys.readouterr().err
    assert "holds no image files" in err and "nothing was predicted" in err
    assert "the others were predicted" not in err


def test_offline_backbones_point_to_the_weights_option(digit_folder, tmp_path, capsys):
    import torch
    import torchvision
    assert cli("fit", digit_folder, "--out", tmp_path / "m.easytl", "--backbone", "resnet18", *FIT) == 1
    err = capsys.readouterr().err
    assert "--weights PATH" in err and "weights='" not in err
    torch.manual_seed(0)
    weights = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), weights)
    assert cli("fit", digit_folder, "--out", tmp_path / "m.easytl", "--backbone", "resnet18",
               "--weights", weights, *FIT) == 0
    assert TransferClassifier.load(tmp_path / "m.easytl").weights == str(weights)


def test_cli_warnings_are_one_line_each_and_bad_files_listed_once(digit_folder, tmp_path, capsys):
    bad = digit_folder / "class_1" / "broken.png"
    bad.write_bytes(b"\x89PNG broken")
    (digit_folder / "class_0" / "notes.txt").write_text("a stray note")
    assert cli("fit", digit_folder, "--out", tmp_path / "m.easytl", *FIT, "--skip-bad-images") == 0
    err = capsys.readouterr().err
    assert err.count(str(bad)) == 1
    assert "easytl: warning: left out 1 unreadable image files" in err
    assert "easytl: warning: left out 1 file: non-images" in err and "notes.txt" in err
    assert "warnings.warn" not in err and "UserWarning" not in err


def test_nested_class_folders_are_labelled_by_their_class_folder(tmp_path, digits, capsys):
    X, y = digits
    for label in (0, 1):
        for k, index in enumerate(np.flatnonzero(y == label)[:12]):
            folder = tmp_path / "data" / f"digit_{label}" / f"batch_{k % 3}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray((X[index] * 255).astype(np.uint8)).resize((24, 24)).save(folder / f"{k}.png")
    model = tmp_path / "m.easytl"
    assert cli("fit", tmp_path / "data", "--out", model, *FIT) == 0
    assert "validation (6 held-out images)" in capsys.readouterr().out
    assert TransferClassifier.load(model).classes_.tolist() == ["digit_0", "digit_1"]
    assert cli("evaluate", model, tmp_path / "data") == 0
    out = capsys.readouterr().out
    assert "on 24 images" in out and "batch_" not in out


def test_import_and_help_stay_light():
    code = ("import sys, easytl, easytl.cli; easytl.cli.build_parser();"
            "print(sorted(m for m in ('torch', 'timm', 'accelerate', 'numpy', 'sklearn') "
            "if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
    version = subprocess.run([sys.executable, "-m", "easytl", "--version"], capture_output=True,
                             text=True, check=True)
    import easytl
    assert version.stdout.strip() == f"easytl {easytl.__version__}"


def test_debug_goes_before_or_after_the_command(capsys):
    for args in (["--debug", "demo", "--backbone", "resnet81"],
                 ["demo", "--backbone", "resnet81", "--debug"]):
        with pytest.raises(ValueError, match="unknown backbone"):
            cli(*args)
    assert cli("demo", "--backbone", "resnet81") == 1
    assert "run with --debug" in capsys.readouterr().err


def test_default_backbone_has_one_definition():
    import easytl.models.backbones
    import easytl.cli
    assert easytl.cli.DEFAULT_BACKBONE == easytl.models.backbones.DEFAULT_BACKBONE
    assert TransferClassifier().backbone == easytl.models.backbones.DEFAULT_BACKBONE


def test_long_stages_show_named_progress_bars(digit_folder, capsys, monkeypatch):
    import easytl.progress
    monkeypatch.setattr(easytl.progress, "SHOW_AFTER_SECONDS", 0.0)
    clf = TransferClassifier(**tiny_kwargs(verbose=1, backbone="efficientnet_lite0", epochs=1))
    clf.fit(str(digit_folder))
    err = capsys.readouterr().err
    assert "checking 24 images" in err and "caching training features" in err
    clf.predict(str(digit_folder))
    assert "predicting" in capsys.readouterr().err
    clf.set_params(verbose=0).predict(str(digit_folder))
    assert capsys.readouterr().err == ""
