"""Review defects (issue 21) around training: the LR finder's suggestion and its copy of the
callbacks, the BatchNorm-folded cache prefix, process-wide state touched by predict/save/fit,
and novelty means of classes that never occur."""

import os
import re
import threading
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from easytl import Callback, Phase, TransferClassifier

from conftest import tiny_cnn, tiny_kwargs


# --------------------------------------------------------------------------- A: LR finder

def analyse(lrs, losses):
    from easytl.training.lr_finder import analyse
    return analyse(lrs, losses)


def curve(n, fall_from=None, fall_to=None, low=1e-7, high=10.0, start=1.0, noise=0.0):
    """An LR sweep's (lrs, smoothed losses): flat at ``start``, falling linearly in log-LR
    between step ``fall_from`` and ``fall_to`` to half, then rising steeply."""
    lrs = low * (high / low) ** (np.arange(n) / (n - 1))
    losses = np.full(n, start)
    if fall_from is not None:
        losses[fall_from:fall_to] = np.linspace(start, start / 2, fall_to - fall_from)
        losses[fall_to:] = start / 2 * np.exp(np.arange(n - fall_to) * 0.3)
    rng = np.random.default_rng(0)
    return lrs, losses + noise * rng.standard_normal(n)


def test_no_suggestion_when_the_loss_never_falls():
    lrs, losses = curve(60)
    losses = losses * np.linspace(1.0, 3.0, 60)  # only rises
    suggestion, reason = analyse(lrs, losses)
    assert suggestion is None and "never fell" in reason


def test_no_suggestion_when_the_loss_only_wobbles_at_the_floor():
    lrs, losses = curve(60, noise=0.01)  # flat with noise: its minimum means nothing
    suggestion, reason = analyse(lrs, losses)
    assert suggestion is None and "never fell" in reason


def test_no_confident_suggestion_from_a_dozen_steps():
    lrs, losses = curve(12, fall_from=3, fall_to=8)
    suggestion, reason = analyse(lrs, losses)
    assert suggestion is None and "12 steps" in reason


def test_suggestion_on_the_steep_part_past_the_first_steps():
    lrs, losses = curve(60, fall_from=20, fall_to=40)
    suggestion, reason = analyse(lrs, losses)
    assert reason is None and lrs[20] <= suggestion <= lrs[39]
    # A fall that starts at once: still never the sweep's first points.
    lrs, losses = curve(60, fall_from=0, fall_to=30)
    suggestion, _ = analyse(lrs, losses)
    assert suggestion >= lrs[3]
    # A step that blew up to NaN at the end is no minimum.
    lrs, losses = curve(60, fall_from=20, fall_to=40)
    losses[-1] = np.nan
    suggestion, reason = analyse(lrs, losses)
    assert reason is None and lrs[20] <= suggestion <= lrs[39]


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


# --------------------------------------------------------------------------- B: folded cache prefix

def test_feature_cache_runs_the_batchnorm_folded_prefix(textures, monkeypatch):
    from easytl.data.augment import Preprocessor
    from easytl.data.sources import as_image_source
    from easytl.models.adapters import create_backbone
    from easytl.models.device import make_accelerator
    from easytl.models.network import TransferModel
    from easytl.training import feeds

    backbone = create_backbone(tiny_cnn(), None, image_size=32)
    with torch.no_grad():  # running statistics that folding must carry over
        for m in backbone.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    model = TransferModel(backbone, nn.Linear(16, 4)).train()
    X, y = textures
    source, _ = as_image_source(X, None, size=32)
    config = backbone.data_config
    feed = feeds.ImageFeed(source, np.unique(y, return_inverse=True)[1],
                           Preprocessor(32, config["mean"], config["std"], augment=None),
                           batch_size=16, device=torch.device("cpu"))
    ran = []
    real = feeds.fold_batchnorm

    def spy(module, example, *args, **kwargs):
        ran.append(real(module, example, *args, **kwargs))
        return ran[-1]

    monkeypatch.setattr(feeds, "fold_batchnorm", spy)
    cache = feeds.CachedFeed.build(model, feed, 2, 1, False, make_accelerator("cpu", "no"))
    assert len(ran) == 1
    assert not any(isinstance(m, nn.BatchNorm2d) for m in ran[0].modules())  # folded
    assert model.training and backbone.stages[0][1].training  # the model itself is untouched
    prefix = nn.Sequential(*backbone.stages[:2]).eval()
    with torch.no_grad():
        expected = torch.cat([prefix(x) for x, _ in feed.ordered()])
    torch.testing.assert_close(cache.all_rows(), expected, rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------- C: process-wide state

@pytest.fixture(scope="module")
def two_models(textures):
    X, y = textures
    kwargs = dict(schedule=[Phase(1, 0)], epochs=None, predict_batch_size=4)
    bf16 = TransferClassifier(**tiny_kwargs(mixed_precision="bf16", **kwargs)).fit(X, y)
    fp32 = TransferClassifier(**tiny_kwargs(mixed_precision="no", random_state=1, **kwargs)).fit(X, y)
    return bf16, fp32


def test_two_threads_predict_as_one_at_a_time(textures, two_models):
    X, _ = textures
    alone = [m.predict_proba(X) for m in two_models]
    assert not np.array_equal(alone[0], alone[1])
    results = {0: [], 1: []}
    start = threading.Barrier(2)

    def work(k):
        start.wait()
        for _ in range(4):
            results[k].append(two_models[k].predict_proba(X))

    threads = [threading.Thread(target=work, args=(k,)) for k in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in (0, 1):
        assert len(results[k]) == 4
        for got in results[k]:
            np.testing.assert_array_equal(got, alone[k])


def test_predict_leaves_process_state_alone(textures, two_models):
    from easytl.models.device import make_accelerator
    X, _ = textures
    # Someone else's accelerator in this process (a bf16 training loop); an fp32 model predicts.
    theirs = make_accelerator("cpu", "bf16")
    model = two_models[1]
    rng, environ = torch.get_rng_state(), dict(os.environ)
    model.predict(X[:8])
    model.predict_proba(X[:8])
    model.transform(X[:8])
    model.predict_tta(X[:8], n_augment=3)
    assert theirs.mixed_precision == "bf16"  # accelerate's process-wide state was not reset
    assert torch.equal(torch.get_rng_state(), rng)
    assert dict(os.environ) == environ


def test_saving_reads_the_umask_without_changing_it(textures, two_models, tmp_path, monkeypatch):
    import easytl.io
    current = os.umask(0o022)
    os.umask(current)
    calls = []
    real = os.umask
    monkeypatch.setattr(os, "umask", lambda mask: calls.append(mask) or real(mask))
    path = two_models[1].save(tmp_path / "m.easytl")
    assert calls == []  # no flip: another thread creating a file meanwhile gets the right mode
    assert (path.stat().st_mode & 0o777) == (0o666 & ~current)
    assert easytl.io.current_umask() == current


def test_mlflow_logging_leaves_the_process_uri_and_environment(textures, tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow", reason="mlflow is the tracking extra")
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_ALLOW_FILE_STORE"):
        monkeypatch.delenv(name, raising=False)
    environ = dict(os.environ)
    from mlflow.tracking._tracking_service import utils
    monkeypatch.setattr(utils, "_tracking_uri", None)
    X, y = textures
    TransferClassifier(**tiny_kwargs(schedule=[Phase(1, 0)], epochs=None, log_with="mlflow",
                                     logging_dir=tmp_path)).fit(X, y)
    assert dict(os.environ) == environ and utils._tracking_uri is None
    client = mlflow.tracking.MlflowClient((tmp_path / "mlruns").resolve().as_uri())
    assert len(client.search_runs([e.experiment_id for e in client.search_experiments()])) == 1


# --------------------------------------------------------------------------- D: novelty means

def test_a_class_that_never_occurs_has_no_mean_to_be_near():
    from easytl.trust.statistics import NoveltyModel
    rng = np.random.default_rng(0)
    # Two classes far from the origin; class 2 never occurs in training.
    features = np.r_[rng.normal(10, 1, (50, 4)), rng.normal(-10, 1, (50, 4))]
    labels = np.zeros((100, 3))
    labels[:50, 0] = labels[50:, 1] = 1
    model = NoveltyModel.fit(features, labels, 3)
    near_origin = np.zeros((1, 4))  # far from every image seen, close to a zero "mean"
    known = model.score(features).max()
    assert model.score(near_origin)[0] > 3 * known
