"""What `easytl fit` (and a verbose fit) says: the epoch it kept, last; what --save-interrupted
wrote without validation data; the plan in a few short lines."""

import numpy as np
import pytest

from easytl import TransferClassifier
from easytl.cli import main
from easytl.cli.fit_cmd import _kept_epoch

from conftest import tiny_kwargs

HELD_OUT = ["--image-size", "32", "--epochs", "3", "--schedule", "feature_extraction", "--val-size",
            "0.25", "--verbose", "0"]


@pytest.mark.slow
def test_save_interrupted_without_validation_names_the_epoch_written_not_none(
        digit_folder, tmp_path, capsys, interrupt_at):
    out = tmp_path / "m.easytl"
    interrupt_at(3)  # two epochs finished
    command = ["fit", str(digit_folder), "--out", str(out), "--image-size", "32", "--epochs", "4",
               "--schedule", "feature_extraction", "--val-size", "0", "--save-interrupted"]
    assert main(command) == 130
    captured = capsys.readouterr()
    assert out.is_file() and "None" not in captured.out, captured.out
    assert "interrupted after 2 epochs; the last finished epoch's weights (no held-out images " \
        "to pick a best epoch by) written to" in captured.out, captured.out
    assert "best weights" not in captured.err, captured.err  # no best epoch without validation


@pytest.mark.slow
def test_the_last_line_of_fit_says_which_epoch_was_kept(digit_folder, tmp_path, capsys):
    out = tmp_path / "m.easytl"
    assert main(["fit", str(digit_folder), "--out", str(out), *HELD_OUT]) == 0
    last = capsys.readouterr().out.rstrip("\n").splitlines()[-1]
    assert "best epoch" in last and f"model written to {out}" in last, last


def test_a_kept_probe_is_named_whether_or_not_fine_tuning_ran():
    from types import SimpleNamespace
    probe, tuned = {"phase": "probe"}, {"phase": "top3"}
    assert _kept_epoch(SimpleNamespace(history_=[probe], best_epoch_=1)) == (
        "best epoch 1 of 1 (the linear probe's; fine-tuning did not run)")
    assert _kept_epoch(SimpleNamespace(history_=[probe], best_epoch_=None)) == (
        "the last epoch (1, the linear probe's) kept")
    assert _kept_epoch(SimpleNamespace(history_=[probe, tuned], best_epoch_=None)) == (
        "the last epoch (2) kept")


def test_the_plan_is_printed_in_a_few_short_lines_and_kept_whole_in_the_history(textures, capsys):
    X, y = textures
    y = np.where(np.arange(len(y)) % 5 == 0, np.roll(y, 20), y)  # noisy: fine-tuning follows
    clf = TransferClassifier(**tiny_kwargs(schedule="auto", epochs=None, head="auto",
                                           val_size="auto", verbose=1)).fit(X, y)
    note = clf.history_[0]["note"]  # the plan's sentence and what the probe decided
    lines = capsys.readouterr().err.splitlines()
    blocks = []  # each note: its title line and the indented lines after it
    for i, line in enumerate(lines):
        if line.startswith(("easytl plan: ", "easytl after the probe: ")):
            block = [line]
            for more in lines[i + 1:]:
                if not more.startswith("  "):
                    break
                block.append(more)
            blocks.append(block)
    assert blocks and 3 <= len(blocks[0]) <= 8, blocks
    assert all(len(line) <= 100 for block in blocks for line in block), blocks
    words = " ".join(" ".join(block[0].split(": ", 1)[1:] + block[1:]) for block in blocks)
    assert " ".join(words.split()) == " ".join(note.replace("; ", " ").split())  # the same words
