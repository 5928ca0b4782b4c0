"""The LR range test (``lr_find``): when its loss curve shows a fall, what it suggests, and what
the sweep leaves alone (the estimator, the user's callbacks)."""

import re
import warnings
from types import SimpleNamespace

import numpy as np
import pytest

from easytl import Callback, Phase, TransferClassifier, make_textures
from easytl.training.lr_finder import LRSweep, analyse

from conftest import lite0, tiny_kwargs


def curve(n, fall_from=None, fall_to=None, low=1e-7, high=10.0, start=1.0, noise=0.0, seed=0):
    """An LR sweep's (lrs, losses per step): flat at ``start``, falling linearly in log-LR
    between step ``fall_from`` and ``fall_to`` to half, then rising steeply; Gaussian noise."""
    lrs = low * (high / low) ** (np.arange(n) / (n - 1))
    losses = np.full(n, start)
    if fall_from is not None:
        losses[fall_from:fall_to] = np.linspace(start, start / 2, fall_to - fall_from)
        losses[fall_to:] = start / 2 * np.exp(np.arange(n - fall_to) * 0.3)
    rng = np.random.default_rng(seed)
    return lrs, losses + noise * rng.standard_normal(n)


def swept(raw, start_lr=1e-7, end_lr=10.0, num_steps=100):
    """The result of an LRSweep fed ``raw`` as its per-step losses (no model: the loss values of a
    real sweep, replayed through the sweep's own averaging and divergence rule)."""
    sweep = LRSweep(1e-3, start_lr, end_lr, num_steps, divergence=4.0)
    sweep.trainer = SimpleNamespace(optimizer=SimpleNamespace(param_groups=[]), stop_training=False)
    sweep.active, sweep.steps, sweep.phase = True, num_steps, "top3"
    for step, loss in enumerate(raw):
        if not sweep.active:  # diverged: the sweep stops its fit
            break
        sweep.on_batch_end(step, {"loss": loss})
    return sweep.result()


# The per-step losses of lr_find(TransferClassifier(image_size=64, random_state=0), X, y) on
# make_textures(n_per_class=30, size=64, random_state=0): fine-tuning from a converged probe
# head, loss ~0.005 with batch noise of the same size; the phase had 60 steps, and the sweep
# diverged at its 44th (lr 0.068).
CONVERGED_HEAD = [
    0.0047, 0.0017, 0.0077, 0.0108, 0.005, 0.0034, 0.0028, 0.0084, 0.0035, 0.011, 0.0035, 0.0045,
    0.0032, 0.0038, 0.0044, 0.0046, 0.0069, 0.0042, 0.0023, 0.0017, 0.0013, 0.0006, 0.0014, 0.0007,
    0.0007, 0.0002, 0.0004, 0.0009, 0.0001, 0.0002, 0.0002, 0.0001, 0.0, 0.0, 0.0001, 0.0001, 0.0,
    0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 23.8431]


def test_batch_noise_on_a_converged_head_is_no_fall_at_the_floor():
    # The first steps' noise made the smoothed loss "fall" fastest at lr 3.5e-07 (issue 32 item 7).
    result = swept(CONVERGED_HEAD, num_steps=60)
    assert len(result.lrs) == len(CONVERGED_HEAD)
    assert result.diverged_at == pytest.approx(0.0677, rel=1e-3)
    assert result.suggestion is None and result.loss_fell is False
    assert "never fell meaningfully" in result.reason and "batch noise" in result.reason


def test_noise_alone_rarely_suggests_and_never_at_the_floor():
    rng = np.random.default_rng(0)
    suggestions = []
    for n in (30, 60, 100):
        for _ in range(20):
            scale = rng.choice([0.005, 1.0])
            gaussian = scale * (1 + 0.1 * rng.standard_normal(n))
            raw = rng.exponential(scale, n) if rng.random() < 0.5 else gaussian
            result = swept(raw, num_steps=n)
            if result.suggestion is not None:
                suggestions.append((n, result.suggestion, result.lrs))
    assert len(suggestions) <= 3, suggestions  # about 1 sweep in 60 at NOISE_Z = 4
    for n, suggestion, lrs in suggestions:
        assert suggestion >= lrs[max(5, n // 10)]


def test_no_suggestion_when_the_loss_never_falls():
    lrs, losses = curve(60)
    losses = losses * np.linspace(1.0, 3.0, 60)  # only rises
    suggestion, reason = analyse(lrs, losses)
    assert suggestion is None and "never fell" in reason


def test_no_suggestion_when_the_loss_only_wobbles_at_the_floor():
    for seed in range(10):
        lrs, losses = curve(60, noise=0.05, seed=seed)  # flat with noise: its minimum means nothing
        suggestion, reason = analyse(lrs, losses)
        assert suggestion is None and "never fell" in reason


def test_no_confident_suggestion_from_a_dozen_steps():
    lrs, losses = curve(12, fall_from=3, fall_to=8)
    suggestion, reason = analyse(lrs, losses)
    assert suggestion is None and "12 steps" in reason


def test_a_clear_fall_is_suggested_inside_it():
    lrs, losses = curve(60, fall_from=20, fall_to=40)
    suggestion, reason = analyse(lrs, losses)
    assert reason is None and lrs[20] <= suggestion <= lrs[39]
    # The same fall under batch noise (a tenth of the loss): still inside it.
    for seed in range(10):
        lrs, losses = curve(100, fall_from=40, fall_to=70, noise=0.1, seed=seed)
        result = swept(losses)
        assert result.reason is None and lrs[40] <= result.suggestion <= lrs[69], seed
    # A fall that starts at once: still never the sweep's first steps.
    lrs, losses = curve(60, fall_from=0, fall_to=30)
    suggestion, _ = analyse(lrs, losses)
    assert lrs[6] <= suggestion <= lrs[29]
    # A step that blew up to NaN at the end is no minimum.
    lrs, losses = curve(60, fall_from=20, fall_to=40)
    losses[-1] = np.nan
    suggestion, reason = analyse(lrs, losses)
    assert reason is None and lrs[20] <= suggestion <= lrs[39]


@pytest.mark.slow  # the default plan's probe, then the sweep (about 20 s on 2 cores)
def test_lr_find_from_a_converged_probe_head_suggests_a_trainable_lr_or_none():
    X, y = make_textures(n_per_class=20, size=32, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = TransferClassifier.lr_find(lite0(schedule="auto", head="auto", val_size="auto"), X, y)
    assert result.phase == "top3"  # fine-tuning from the probe's head
    # Today's rule suggested 3.5e-07 here, the sweep's third step.
    if result.suggestion is None:
        assert "never fell" in result.reason
    else:
        assert result.suggestion >= 100 * result.lrs[0] and result.suggestion <= result.min_loss_lr


def test_lr_find_says_when_the_loss_never_fell(textures):
    X, y = textures
    clf = TransferClassifier(**tiny_kwargs(schedule=[Phase(30, "all")], epochs=None))
    # From lr 10 up, every step only makes it worse: the sweep's start is no suggestion.
    with pytest.warns(UserWarning, match="no LR suggested"):
        result = clf.lr_find(X, y, start_lr=10.0, end_lr=1e6, num_steps=40)
    assert result.suggestion is None and result.loss_fell is False
    assert "fell" in result.reason or "steps" in result.reason


def test_lr_find_suggests_when_the_loss_falls(textures):
    X, y = textures
    clf = TransferClassifier(**tiny_kwargs(schedule=[Phase(30, "all")], epochs=None))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a clean fall: no warning
        result = clf.lr_find(X, y, start_lr=1e-5, end_lr=100, num_steps=60)
    assert result.loss_fell is True and result.reason is None
    assert result.lrs[3] <= result.suggestion <= result.min_loss_lr


class Recorder(Callback):
    def __init__(self):
        self.calls = []

    def on_train_begin(self, logs=None):
        self.calls.append("train_begin")

    def on_batch_end(self, batch, logs=None):
        self.calls.append("batch_end")


def test_lr_find_leaves_the_users_callbacks_untouched(textures):
    X, y = textures
    recorder = Recorder()
    clf = TransferClassifier(**tiny_kwargs(schedule=[Phase(3, "all")], epochs=None, callbacks=[recorder]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.lr_find(X, y, num_steps=10)
    assert recorder.calls == [] and recorder.trainer is None
    assert clf.callbacks == [recorder]


def test_cli_lr_find_prints_no_suggestion_and_no_fit_progress(digit_folder, tmp_path, capsys):
    from easytl.cli import main
    # 24 images, batch 32: the swept phase has a handful of steps, too few for a suggestion.
    plot = tmp_path / "lr.png"
    assert main(["lr-find", str(digit_folder), "--image-size", "32", "--steps", "12",
                 "--end-lr", "100", "--verbose", "1", "--plot", str(plot)]) == 0
    captured = capsys.readouterr()
    assert "no suggestion:" in captured.out and "--lr" not in captured.out
    assert "no LR suggested" in captured.err and plot.stat().st_size > 1000
    # The sweep's copy prints no fit plan and no per-epoch line with the schedule's LR.
    assert "easytl plan:" not in captured.err and "held out" not in captured.err
    assert "lr (solved)" not in captured.err and not re.search(r"epoch +\d+ +\w+ +lr ", captured.err)


def test_lr_auto_on_the_default_plan_keeps_a_trainable_lr(textures):
    X, y = textures
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = TransferClassifier(**tiny_kwargs(epochs=None, lr="auto")).fit(X, y)
    assert clf.lr_ >= 1e-5
