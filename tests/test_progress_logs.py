"""Progress in a log file (stderr captured by pytest is not a terminal, as with ``2> log.txt``):
every stage writes whole lines, one when it shows, at most one every LOG_REFRESH_SECONDS, and
one at its end with the count and the time; nothing is redrawn with carriage returns or erased."""

import re
import time

import pytest

import easytl.progress
from easytl import Callback, TransferClassifier

from conftest import tiny_kwargs


@pytest.fixture
def quick_bars(monkeypatch):
    """Bars show at once, and a log line is due every 0.2 s instead of every 30 s."""
    monkeypatch.setattr(easytl.progress, "SHOW_AFTER_SECONDS", 0.0)
    monkeypatch.setattr(easytl.progress, "LOG_REFRESH_SECONDS", 0.2)


def test_a_stage_in_a_log_writes_a_line_when_shown_every_interval_and_at_its_end(quick_bars, capsys):
    with easytl.progress.progress(total=12, desc="caching training features") as bar:
        for _ in range(12):
            time.sleep(0.05)
            bar.update()
    err = capsys.readouterr().err
    assert "\r" not in err and err.endswith("\n"), repr(err)
    lines = err.splitlines()
    assert lines[0].startswith("caching training features: 0/12 img"), lines
    assert re.fullmatch(r"caching training features: 12/12 img in \d+\.\d s", lines[-1]), lines
    assert 1 <= len(lines) - 2 <= 4, lines  # ~0.6 s: a line every 0.2 s in between
    assert all(line.startswith("caching training features: ") for line in lines)


def test_a_delayed_stage_in_a_log_shows_by_its_ticker_and_a_quick_one_stays_silent(monkeypatch, capsys):
    monkeypatch.setattr(easytl.progress, "SHOW_AFTER_SECONDS", 0.1)
    with easytl.progress.progress(total=3, desc="predicting") as bar:
        time.sleep(0.4)  # one long first step: the ticker writes the first line
        bar.update(3)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("predicting: 0/3 img after") and lines[-1].startswith("predicting: 3/3 img in")
    with easytl.progress.progress(total=3, desc="checking 3 images") as bar:
        bar.update(3)
    assert capsys.readouterr().err == ""


def test_a_fit_in_a_log_writes_start_and_end_lines_of_caching_and_predicting(quick_bars, textures, capsys):
    X, y = textures
    clf = TransferClassifier(**tiny_kwargs(cache_features=True, verbose=1, epochs=1)).fit(X, y)
    clf.predict(X[:8])
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = err.splitlines()
    assert any(re.fullmatch(r"caching training features: 0/64 img after .*", line) for line in lines), err
    assert any(re.fullmatch(r"caching training features: 64/64 img in \d+\.\d s", line) for line in lines)
    assert any(re.fullmatch(r"predicting: 8/8 img in \d+\.\d s", line) for line in lines), err


class _SlowBatches(Callback):
    def on_batch_end(self, batch, logs=None):
        time.sleep(0.15)


def test_a_long_epoch_in_a_log_writes_a_line_while_it_runs_and_a_short_one_only_its_summary(
        quick_bars, textures, capsys):
    X, y = textures
    TransferClassifier(**tiny_kwargs(verbose=1, epochs=1, callbacks=[_SlowBatches()])).fit(X, y)
    err = capsys.readouterr().err
    assert "\r" not in err
    during = [line for line in err.splitlines() if line.startswith("epoch 1 [")]
    assert len(during) >= 2 and all(" batch after " in line for line in during), err
    assert all("loss=" in line for line in during if not line.startswith("epoch 1 [head 1/1]: 0/"))
    assert any(line.startswith("epoch   1 ") for line in err.splitlines())  # the summary
    easytl.progress.LOG_REFRESH_SECONDS = 30.0  # (restored by monkeypatch)
    TransferClassifier(**tiny_kwargs(verbose=1, epochs=1)).fit(X, y)
    err = capsys.readouterr().err
    assert not [line for line in err.splitlines() if line.startswith("epoch 1 [")], err


def test_log_lines_read_as_counts_and_times():
    from easytl.progress import log_line
    stats = dict(n=40, total=160, elapsed=12.0, prefix="caching training features", unit="img",
                 postfix=None)
    assert log_line(stats) == "caching training features: 40/160 img after 12.0 s (about 36.0 s left)"
    assert log_line({**stats, "n": 160, "elapsed": 185.4}, final=True) == (
        "caching training features: 160/160 img in 3 min 05 s")
    assert log_line({**stats, "total": None, "n": 3, "unit": "step"}) == (
        "caching training features: 3 step after 12.0 s")


def test_plot_tsne_says_which_panel_it_is_embedding_unless_verbose_0(quick_bars, textures, capsys):
    pytest.importorskip("matplotlib")
    from easytl import plot_tsne
    X, y = textures
    clf = TransferClassifier(**tiny_kwargs(epochs=1, val_size=0)).fit(X, y)
    clf.set_params(verbose=1)
    plot_tsne(X, y, [clf, clf], titles=["before", "after"])
    lines = capsys.readouterr().err.splitlines()
    for panel in ("panel 1/2, before", "panel 2/2, after"):
        assert any(re.fullmatch(rf"t-SNE of 80 images \({panel}\): done in \d+\.\d s", line)
                   for line in lines), lines
    assert any(line.startswith("extracting features: 80/80 img in") for line in lines), lines
    clf.set_params(verbose=0)
    plot_tsne(X, y, clf)
    assert capsys.readouterr().err == ""
