"""The BatchNorm-folded cache prefix, process-wide state that predict/save/fit must leave alone,
and novelty means of classes that never occur."""

import os
import threading

import numpy as np
import pytest
import torch
from torch import nn

from easytl import Phase, TransferClassifier

from conftest import tiny_cnn, tiny_kwargs


# The LR finder's tests (section A) live in tests/training/test_lr_finder.py.

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
