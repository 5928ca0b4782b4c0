"""Messages, progress and reports as a user meets them: bad files, tables, files that cannot be
written, the CLI's wording, progress bars in logs. In-process and small: part of the fast subset."""

import os
import warnings

import numpy as np
import pandas as pd
import pytest

from easytl import TransferClassifier
from easytl.cli import main
from easytl.io import check_writable

from conftest import lite0


@pytest.fixture
def folder_with_a_bad_file(digit_folder):
    (digit_folder / "class_0" / "broken.png").write_bytes(b"not a png at all")
    return digit_folder


def test_report_skips_the_training_files_fit_skipped(folder_with_a_bad_file, tmp_path):
    with pytest.warns(UserWarning, match="left out 1 unreadable"):
        clf = lite0(on_bad_image="skip").fit(folder_with_a_bad_file)
    assert [p.name for p, _ in clf.skipped_images_] == ["broken.png"]
    with pytest.warns(UserWarning, match="X_train: left out 1 files that fit skipped"):
        test = sorted(str(p) for p in folder_with_a_bad_file.glob("*/[0-3].*"))
        result = clf.report(test, [p.split(os.sep)[-2] for p in test], html=tmp_path / "r.html",
                            X_train=str(folder_with_a_bad_file))
    assert (tmp_path / "r.html").is_file() and result["html"] == tmp_path / "r.html"


@pytest.fixture(scope="module")
def table_model(tmp_path_factory, digits):
    """A model fitted on a DataFrame of relative paths, and a folder those paths are in."""
    from PIL import Image
    root = tmp_path_factory.mktemp("table")
    X, y = digits
    rows = []
    for k in range(24):
        name = f"img{k}.png"
        Image.fromarray((X[k] * 255).astype(np.uint8)).resize((24, 24)).save(root / name)
        rows.append((name, int(y[k] % 2)))
    table = pd.DataFrame(rows, columns=["path", "label"])
    clf = lite0().fit(table, root=root)
    return clf, table, root


def test_score_predict_and_report_take_root_for_a_table(table_model, tmp_path, monkeypatch):
    clf, table, root = table_model
    clf._table_options["root"] = None  # as a model loaded on another machine: no root stored
    monkeypatch.chdir(tmp_path)       # the relative paths do not resolve against the cwd
    with pytest.raises(ValueError, match=f"Paths were looked for under {tmp_path.resolve()}"):
        clf.score(table)
    assert 0.0 <= clf.score(table, root=root) <= 1.0
    assert len(clf.predict(table, root=root)) == len(table)
    assert clf.predict_proba(table, root=root).shape == (len(table), 2)
    assert clf.report(table, root=root)["confusion_matrix"].sum() == len(table)


def test_a_file_that_cannot_be_created_is_refused_before_training(tmp_path):
    if not os.path.isdir("/proc/self"):
        pytest.skip("needs /proc")
    with pytest.raises(PermissionError, match="creating a file in /proc failed"):
        check_writable("/proc/x.easytl")  # os.access says yes to root; creating a file fails
    assert check_writable(tmp_path / "new" / "m.easytl") == tmp_path / "new" / "m.easytl"
    assert list(tmp_path.iterdir()) == []  # the check leaves nothing behind


def test_evaluate_counts_an_unreadable_training_file_as_a_note_not_a_failure(
        folder_with_a_bad_file, digit_folder, tmp_path, capsys):
    clf = lite0(on_bad_image="skip")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(folder_with_a_bad_file)
    model = clf.save(tmp_path / "m.easytl")
    test = tmp_path / "test"
    for sub in ("class_0", "class_1", "class_2"):
        (test / sub).mkdir(parents=True)
        for image in sorted((digit_folder / sub).glob("[0-3].*")):
            (test / sub / image.name).write_bytes(image.read_bytes())
    code = main(["evaluate", str(model), str(test), "--train", str(folder_with_a_bad_file),
                 "--html", str(tmp_path / "r.html")])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "1 training image in" in err and "left out of the near-duplicate search" in err
    assert "were not evaluated" not in err
    assert (tmp_path / "r.html").is_file()


def test_multi_label_evaluate_html_is_refused_before_any_prediction(tmp_path, capsys, monkeypatch):
    rng = np.random.default_rng(0)
    X = rng.random((24, 32, 32, 3)).astype(np.float32)
    y = [("a",), ("b",), ("a", "b")] * 8
    model = lite0().fit(X, y).save(tmp_path / "ml.easytl")
    folder = tmp_path / "test" / "a"
    folder.mkdir(parents=True)
    from PIL import Image
    Image.fromarray((X[0] * 255).astype(np.uint8)).save(folder / "0.png")

    def predicted(*args, **kwargs):
        raise AssertionError("predicted before refusing")
    monkeypatch.setattr("easytl.prediction.PredictionMixin._run", predicted)
    code = main(["evaluate", str(model), str(tmp_path / "test"), "--html", str(tmp_path / "r.html")])
    assert code == 1
    assert "--html covers single-label models" in capsys.readouterr().err
    clf = TransferClassifier.load(model)
    with pytest.raises(ValueError, match="covers single-label models"):
        clf.report(X, y, html=tmp_path / "r.html")


def test_a_torch_save_pickle_is_named_as_such_and_never_unpickled(tmp_path):
    import torch
    from easytl.io import ModelFileError
    torch.save({"weight": torch.zeros(2)}, tmp_path / "model.easytl")
    with pytest.raises(ModelFileError, match="is a PyTorch pickle .torch.save., which easytl never loads"):
        TransferClassifier.load(tmp_path / "model.easytl")
    torch.save({"weight": torch.zeros(2)}, tmp_path / "old.pt", _use_new_zipfile_serialization=False)
    with pytest.raises(ModelFileError, match="PyTorch pickle"):
        TransferClassifier.load(tmp_path / "old.pt")


FIT = ["--image-size", "32", "--epochs", "3", "--schedule", "feature_extraction", "--val-size", "0.25"]


def test_ctrl_c_messages_count_epochs_and_promise_weights_only_when_an_epoch_finished(
        digit_folder, tmp_path, capsys, interrupt_at):
    out = tmp_path / "m.easytl"
    interrupt_at(1)  # before the first epoch ended: nothing to keep
    assert main(["fit", str(digit_folder), "--out", str(out), *FIT, "--save-interrupted"]) == 130
    err = capsys.readouterr().err
    assert "NOT trained" in err and "keeping the best weights so far" not in err
    interrupt_at(2)  # one epoch finished
    assert main(["fit", str(digit_folder), "--out", str(out), *FIT, "--save-interrupted"]) == 130
    captured = capsys.readouterr()
    assert "keeping the best weights so far" in captured.err
    assert "interrupted after 1 epoch;" in captured.err and "interrupted_" not in captured.err
    assert "interrupted after 1 epoch;" in captured.out


def test_compare_names_the_cli_flag_for_left_out_backbones(digit_folder, capsys, monkeypatch):
    from easytl import selection
    rows = selection.BackboneComparison([dict(dict.fromkeys(selection.ROW_KEYS), backbone="resnet18",
                                              pretrained=True, skipped=selection.LEFT_OUT)])
    monkeypatch.setattr(selection, "compare_backbones", lambda *a, **k: rows)
    assert main(["compare", str(digit_folder)]) == 0
    out = capsys.readouterr().out
    assert "name them in --backbones to compare them): resnet18" in out and "backbones=" not in out
    assert "backbones=" in selection.format_rows(rows)  # Python users get the parameter's name


def test_counts_in_cli_messages_are_singular_for_one(tmp_path, capsys):
    rng = np.random.default_rng(0)
    X = rng.random((8, 32, 32, 3)).astype(np.float32)
    model = lite0().fit(X, [("a",)] * 8, ).save(tmp_path / "one.easytl")  # multi-label, 1 class
    assert main(["export", str(model), "--format", "torchscript", "--out", str(tmp_path / "m.pt")]) == 0
    assert "probabilities over 1 class;" in capsys.readouterr().out


def test_a_one_class_folder_is_named_with_its_one_sub_folder(digit_folder, tmp_path, capsys, monkeypatch):
    import shutil
    shutil.rmtree(digit_folder / "class_1")
    shutil.rmtree(digit_folder / "class_2")
    monkeypatch.setattr(TransferClassifier, "fit", lambda *a, **k: pytest.fail("training started"))
    for command in (["fit", str(digit_folder), "--out", str(tmp_path / "m.easytl")],
                    ["lr-find", str(digit_folder)], ["compare", str(digit_folder)]):
        assert main(command) == 1
        err = capsys.readouterr().err
        assert f"{digit_folder} holds a single class sub-folder, 'class_0'" in err, err
        assert "one sub-folder per class" in err


def test_rejected_rows_do_not_show_the_rejected_class_probability_as_unknowns(
        digit_folder, tmp_path, capsys):
    import csv
    import io
    import json
    clf = lite0().fit(str(digit_folder))
    novelty = clf.novelty_score([str(p) for p in sorted(digit_folder.glob("class_0/*"))])
    clf.unknown_threshold_ = float(np.median(novelty))  # about half the images are rejected
    model = clf.save(tmp_path / "m.easytl")
    assert main(["predict", str(model), str(digit_folder / "class_0"), "--reject-unknown",
                 "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    rejected = [r for r in rows if r["label"] == "unknown"]
    accepted = [r for r in rows if r["label"] != "unknown"]
    assert rejected and accepted
    assert all(r["probability"] == "" and r["rejected_label"] in {"class_0", "class_1", "class_2"}
               and 0 < float(r["rejected_probability"]) <= 1 for r in rejected)
    assert all(float(r["probability"]) > 0 and r["rejected_label"] == r["rejected_probability"] == ""
               for r in accepted)
    assert main(["predict", str(model), str(digit_folder / "class_0"), "--reject-unknown",
                 "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    unknown = next(r for r in rows if r["label"] == "unknown")
    assert unknown["probability"] is None and 0 < unknown["rejected_probability"] <= 1
    assert main(["predict", str(model), str(digit_folder / "class_0"), "--reject-unknown"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["path", "label", "probability", "novelty", "rejected_label",
                                "rejected_probability"]
    assert all(len(line.split()) == 6 for line in table[1:])


def test_compare_shows_progress_on_stderr_unless_verbose_0(digit_folder, capsys, monkeypatch):
    monkeypatch.setattr("easytl.progress.SHOW_AFTER_SECONDS", 0)  # no wait: tiny data is quick
    command = ["compare", str(digit_folder), "--backbones", "efficientnet_lite0", "--cv", "2",
               "--image-size", "32"]
    assert main(command) == 0  # --verbose 1 by default
    captured = capsys.readouterr()
    assert "comparing backbones" in captured.err
    assert captured.out.count("efficientnet_lite0") == 1 and "accuracy" not in captured.err  # table once
    assert main([*command, "--verbose", "0"]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and "efficientnet_lite0" in captured.out


def test_predicting_one_batch_shows_a_bar_counted_in_images(capsys, monkeypatch):
    """The bar appears once its delay has passed, while the one batch is still running (it used
    to wait for a batch to end, so a single batch of <= 128 images never showed one)."""
    import time

    import easytl.models.inference as inference
    rng = np.random.default_rng(0)
    X = rng.random((20, 32, 32, 3)).astype(np.float32)
    clf = lite0().fit(X, [0, 1] * 10)
    capsys.readouterr()
    monkeypatch.setattr("easytl.progress.SHOW_AFTER_SECONDS", 0.05)
    original, seen = inference.in_chunks, []

    def slow_batch(*args, **kwargs):  # the batch lasts until the bar shows (at most 10 s)
        deadline = time.monotonic() + 10
        while not seen and time.monotonic() < deadline:
            err = capsys.readouterr().err
            seen.extend([err] if "predicting" in err else [])
            time.sleep(0.02)
        return original(*args, **kwargs)
    monkeypatch.setattr(inference, "in_chunks", slow_batch)
    clf.set_params(verbose=1)
    assert len(clf.predict(X)) == 20
    assert seen and "0/20" in seen[0] and "img" in seen[0]  # shown during the batch, in images


def test_a_stage_bar_in_a_log_file_is_redrawn_rarely(capsys, monkeypatch):
    """stderr captured here is not a terminal, as when it is redirected to a log: each redraw
    stays in the file, so a bar refreshed every second buried the log in carriage returns."""
    import time

    import easytl.progress
    monkeypatch.setattr(easytl.progress, "SHOW_AFTER_SECONDS", 0.05)
    monkeypatch.setattr(easytl.progress._Bar, "TICK_SECONDS", 0.02)  # a terminal's: 50 a second
    with easytl.progress.progress(total=8, desc="caching features") as bar:
        for _ in range(8):
            time.sleep(0.1)
            bar.update()
    err = capsys.readouterr().err
    assert 1 <= err.count("caching features") <= 2, err  # shown once (and cleared at the end)
    # A longer stage: one draw per LOG_REFRESH_SECONDS, whether updates or the ticker make it.
    monkeypatch.setattr(easytl.progress, "LOG_REFRESH_SECONDS", 0.4)
    with easytl.progress.progress(total=200, desc="predicting") as bar:
        for _ in range(200):
            time.sleep(0.01)
            bar.update()
    draws = capsys.readouterr().err.count("predicting")
    assert 2 <= draws <= 7, draws  # ~2.1 s: 0.05 s delay, then every 0.4 s (and the clear)


def test_notebooks_and_terminals_are_not_logs(monkeypatch):
    import io
    import sys
    import types

    from easytl.progress import is_a_log

    class Terminal(io.StringIO):
        def isatty(self):
            return True
    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)
    assert is_a_log(io.StringIO()) and not is_a_log(Terminal())
    # a notebook's streams are not terminals, yet show bars (widgets, or redrawn text)
    monkeypatch.setitem(sys.modules, "ipykernel", types.ModuleType("ipykernel"))
    assert not is_a_log(io.StringIO())


@pytest.fixture(scope="module")
def probe_only_model():
    """Fitted by the probe alone: one epoch of history."""
    rng = np.random.default_rng(0)
    X = rng.random((24, 32, 32, 3)).astype(np.float32)
    return lite0().fit(X, [0, 1, 2] * 8), X


def test_torchscript_export_prints_no_torch_deprecation_warnings(probe_only_model, tmp_path, capsys):
    model = probe_only_model[0].save(tmp_path / "m.easytl")
    assert main(["export", str(model), "--format", "torchscript", "--out", str(tmp_path / "m.pt")]) == 0
    captured = capsys.readouterr()
    assert "written to" in captured.out and "warning" not in captured.err, captured.err
    from easytl.export import export_model
    before = list(warnings.filters)
    export_model(probe_only_model[0], tmp_path / "again.pt", "torchscript")
    assert warnings.filters == before  # silenced around the export only


def test_report_has_no_empty_history_panels_or_error_headings(probe_only_model, tmp_path):
    clf, X = probe_only_model
    y = clf.predict(X)  # every image "right": no worst errors to show
    page = (clf.report(X, y, html=tmp_path / "r.html")["html"]).read_text()
    assert "Worst errors" not in page
    history = page[page.index("<h2>Training history</h2>"):].split("<h2>")[1]
    assert "<img" not in history and "1 epoch (probe)" in history
