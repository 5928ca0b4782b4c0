"""BatchNorm folded into convolutions for frozen forward passes: faster, same outputs."""

import numpy as np
import torch
from torch import nn

from easytl import TransferClassifier, create_backbone
from easytl.data.augment import Preprocessor
from easytl.data.sources import as_image_source
from easytl.models.folding import fold_batchnorm

from conftest import tiny_cnn, tiny_kwargs


def batchnorms(module):
    return [m for m in module.modules() if isinstance(m, nn.BatchNorm2d)]


def randomise_statistics(module):
    torch.manual_seed(1)
    for bn in batchnorms(module):  # so that folding has something to get wrong
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(-1, 1)
    return module.eval()


def test_folding_removes_batchnorm_and_keeps_outputs():
    model = randomise_statistics(tiny_cnn())
    x = torch.randn(4, 3, 16, 16)
    folded = fold_batchnorm(model, x[:2])
    assert folded is not model and batchnorms(folded) == [] and len(batchnorms(model)) == 2
    torch.testing.assert_close(folded(x), model(x), rtol=1e-5, atol=1e-5)


def test_lite0_folds_every_batchnorm_with_its_activation_kept():
    backbone = create_backbone("efficientnet_lite0").eval()
    x = torch.rand(2, 3, 64, 64)
    folded = fold_batchnorm(backbone, x)
    assert len(batchnorms(backbone)) == 49 and batchnorms(folded) == []
    with torch.no_grad():
        torch.testing.assert_close(folded(x), backbone(x), rtol=1e-4, atol=1e-4)


def test_a_layout_that_breaks_the_structural_rule_is_left_alone():
    class NormThenConv(nn.Module):
        """Registers conv before norm but normalises first: folding would be wrong."""

        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3, padding=1)
            self.norm = nn.BatchNorm2d(3)

        def forward(self, x):
            return self.conv(self.norm(x))

    model = randomise_statistics(NormThenConv())
    assert fold_batchnorm(model, torch.randn(2, 3, 8, 8)) is model
    training = tiny_cnn().train()
    assert fold_batchnorm(training, torch.randn(2, 3, 8, 8)) is training  # batch statistics


def test_predictions_equal_the_unfolded_model(textures):
    X, y = textures
    clf = TransferClassifier(**tiny_kwargs(epochs=2)).fit(X, y)
    randomise_statistics(clf.model_.backbone)
    source, _ = as_image_source(X, size=32)
    config = clf.model_.backbone.data_config
    images = Preprocessor(32, config["mean"], config["std"], augment=None)(
        source.__getitems__(list(range(len(source)))))
    with torch.no_grad():
        expected = torch.softmax(clf.model_(images) / clf.temperature_, dim=1).numpy()
    np.testing.assert_allclose(clf.predict_proba(X), expected, rtol=0, atol=1e-5)
    assert len(batchnorms(clf.model_)) == 2  # the estimator's own model is never modified


def test_predict_folds_once_per_model_state_and_again_after_the_weights_change(monkeypatch, textures):
    from easytl import TransferClassifier
    from easytl.models import folding

    from conftest import tiny_kwargs
    X, y = textures
    clf = TransferClassifier(**tiny_kwargs(epochs=1)).fit(X, y)
    calls = []
    real = folding.fold_batchnorm
    monkeypatch.setattr(folding, "fold_batchnorm", lambda *a, **k: calls.append(1) or real(*a, **k))
    first = clf.predict_proba(X[:5])
    for k in range(3):
        np.testing.assert_array_equal(clf.predict_proba(X[:5]), first)
    assert len(calls) == 1
    with torch.no_grad():  # an in-place change of a weight (what an optimizer step does)
        next(clf.model_.parameters()).mul_(0.5)
    changed = clf.predict_proba(X[:5])
    assert len(calls) == 2 and not np.allclose(changed, first)


def test_the_folded_copy_follows_writes_through_data_and_is_not_kept_for_unfoldable_modules():
    import gc
    import weakref

    from easytl.models.folding import _FOLDED, folded_for_inference
    torch.manual_seed(0)
    module = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU()).eval()
    module[1].running_mean.normal_()
    x = torch.randn(2, 3, 8, 8)
    first = folded_for_inference(module, x)
    assert folded_for_inference(module, x) is first  # reused while nothing changed
    module[0].weight.data.mul_(3)  # no _version bump: what EMA and pruning code do
    with torch.no_grad():
        torch.testing.assert_close(folded_for_inference(module, x)(x), module(x))
    plain = nn.Sequential(nn.Conv2d(3, 4, 3)).eval()  # no BatchNorm: nothing to fold or keep
    assert folded_for_inference(plain, x) is plain
    gone = weakref.ref(plain)
    del plain
    gc.collect()
    assert gone() is None and all(m is not None for m in list(_FOLDED.keys()))
