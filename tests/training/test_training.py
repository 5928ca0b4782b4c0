import copy

import numpy as np
import pytest
import torch
from torch import nn

from easytl import Callback, FeatureExtraction, FineTune, Phase, TransferClassifier
from easytl.models.device import make_accelerator, resolve_mixed_precision

from conftest import tiny_kwargs


def bn_stats(module):
    return [m.running_mean.clone() for m in module.modules() if isinstance(m, nn.BatchNorm2d)]


def fit(textures, **overrides):
    X, y = textures
    return TransferClassifier(**tiny_kwargs(**overrides)).fit(X, y)


def test_frozen_and_default_batchnorm_keep_their_statistics(textures):
    clf = TransferClassifier(**tiny_kwargs(schedule=FineTune()))
    before = bn_stats(clf.backbone)
    first_conv = clf.backbone[0][0].weight.clone()
    clf.fit(*textures)
    after = bn_stats(clf.model_.backbone)
    assert all(torch.equal(a, b) for a, b in zip(before, after))
    assert not torch.equal(first_conv, clf.model_.backbone.stages[0][0].weight)  # it trained


def test_train_bn_opts_in_to_batch_statistics_only_where_unfrozen(textures):
    clf = TransferClassifier(**tiny_kwargs(train_bn=True, schedule=[Phase(1, 0), Phase(1, 1)]))
    bottom, top = bn_stats(clf.backbone)
    clf.fit(*textures)
    bottom_after, top_after = bn_stats(clf.model_.backbone)
    assert torch.equal(bottom, bottom_after)   # never unfrozen: inference mode throughout
    assert not torch.equal(top, top_after)     # unfrozen with train_bn=True: batch statistics

    frozen = TransferClassifier(**tiny_kwargs(train_bn=True, schedule=FeatureExtraction()))
    stats = bn_stats(frozen.backbone)
    frozen.fit(*textures)
    assert all(torch.equal(a, b) for a, b in zip(stats, bn_stats(frozen.model_.backbone)))


def test_history_rows_and_best_epoch_is_restored(textures):
    snapshots = {}

    class Snapshot(Callback):
        def on_epoch_end(self, epoch, logs):
            snapshots[epoch] = copy.deepcopy(self.trainer.model.state_dict())

    clf = fit(textures, epochs=4, lr=0.2, schedule="fine_tune", callbacks=[Snapshot()])
    assert [row["epoch"] for row in clf.history_] == [1, 2, 3, 4]
    assert {"epoch", "phase", "lr", "train_loss", "val_loss", "val_accuracy", "seconds"} <= \
        set(clf.history_[0])
    val_losses = [row["val_loss"] for row in clf.history_]
    assert clf.best_epoch_ == int(np.argmin(val_losses)) + 1
    restored = clf.model_.state_dict()
    assert all(torch.equal(restored[k], v) for k, v in snapshots[clf.best_epoch_].items())


def test_early_stopping_ends_a_phase_without_improvement(textures):
    # An LR far below float32 resolution leaves the weights, hence val_loss, unchanged.
    clf = fit(textures, schedule=FeatureExtraction(epochs=10), epochs=None, lr=1e-30,
              early_stopping=2, augment=None, head="linear")
    assert len(clf.history_) == 3 and clf.best_epoch_ == 1


def test_callback_can_stop_training(textures):
    class StopAtTwo(Callback):
        def on_epoch_end(self, epoch, logs):
            if epoch == 2:
                self.trainer.stop_training = True

    clf = fit(textures, epochs=6, callbacks=[StopAtTwo()])
    assert len(clf.history_) == 2
    assert len(fit(textures, epochs=6, callbacks=[lambda epoch, logs: epoch == 3]).history_) == 3


def test_balanced_class_weight_reaches_the_loss(textures):
    X, y = textures
    keep = np.r_[0:20, 20:25, 40:45, 60:65]  # 20 stripes, 5 of each other class
    seen = {}

    class Grab(Callback):
        def on_train_begin(self, logs=None):
            seen["weight"] = self.trainer.criterion.weight.cpu().numpy()

    clf = TransferClassifier(**tiny_kwargs(class_weight="balanced", val_size=0, epochs=1,
                                           callbacks=[Grab()])).fit(X[keep], y[keep])
    expected = {"stripes": 35 / (4 * 20), "grid": 35 / (4 * 5), "dots": 35 / 20, "noise": 35 / 20}
    assert seen["weight"] == pytest.approx([expected[c] for c in clf.classes_])


def test_gradients_are_clipped_by_norm(textures, monkeypatch):
    from accelerate import Accelerator
    norms = []
    original = Accelerator.clip_grad_norm_

    def spy(self, parameters, max_norm, norm_type=2):
        parameters = list(parameters)
        result = original(self, parameters, max_norm, norm_type)
        grads = [p.grad for p in parameters if p.grad is not None]
        norms.append((float(result), float(torch.norm(torch.stack([g.norm() for g in grads])))))
        return result

    monkeypatch.setattr(Accelerator, "clip_grad_norm_", spy)
    fit(textures, grad_clip=0.01, epochs=1, lr=1.0)
    assert norms and all(after <= 0.01 * 1.001 for _, after in norms)
    assert max(before for before, _ in norms) > 0.01  # clipping really had work to do


@pytest.mark.slow  # a few seconds: keeps the fast subset under 5 min
def test_random_state_makes_fits_repeatable(textures):
    X, y = textures
    a = fit(textures, random_state=7).predict_proba(X)
    b = fit(textures, random_state=7).predict_proba(X)
    c = fit(textures, random_state=8).predict_proba(X)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_nan_loss_stops_with_advice(textures):
    class NaNHead(nn.Module):
        def __init__(self, n_in, n_out):
            super().__init__()
            self.linear = nn.Linear(n_in, n_out)

        def forward(self, x):
            return self.linear(x) * float("nan")

    with pytest.raises(FloatingPointError, match="epoch 1.*lower lr"):
        fit(textures, head=NaNHead)


def test_auto_mixed_precision(monkeypatch):
    monkeypatch.setattr("easytl.models.device.cpu_has_fast_bf16", lambda: True)
    assert resolve_mixed_precision("auto", "cpu") == "bf16"
    monkeypatch.setattr("easytl.models.device.cpu_has_fast_bf16", lambda: False)
    assert resolve_mixed_precision("auto", "cpu") == "no"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert resolve_mixed_precision("auto", "cuda") == "fp16"
    with pytest.raises(ValueError, match="needs a GPU"):
        resolve_mixed_precision("fp16", "cpu")
    assert make_accelerator("cpu", "bf16").mixed_precision == "bf16"
    assert make_accelerator("cpu", "no").mixed_precision == "no"  # a second setting is allowed


def test_warmup_ramps_the_lr_per_step_inside_fit(textures, monkeypatch):
    lrs = []
    original = torch.optim.AdamW.step

    def spy(self, *args, **kwargs):
        lrs.append(self.param_groups[0]["lr"])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", spy)
    # 64 training images / batch 16 = 4 steps per epoch; warm up over the first epoch.
    fit(textures, schedule=FeatureExtraction(epochs=2), epochs=None, warmup_epochs=1,
        lr_decay=None, lr=0.01)
    assert lrs == pytest.approx([0.002, 0.004, 0.006, 0.008, 0.01, 0.01, 0.01, 0.01])


def test_plateau_decay_cuts_the_lr_when_validation_stalls(textures):
    clf = fit(textures, schedule=FeatureExtraction(epochs=4), epochs=None, lr=1e-30,
              lr_decay="plateau", augment=None, head="linear")
    lrs = [row["lr"] for row in clf.history_]
    assert lrs[:3] == [1e-30] * 3 and lrs[3] == pytest.approx(1e-31, rel=1e-6, abs=0)


def test_given_validation_data_replaces_the_split(textures):
    X, y = textures
    clf = TransferClassifier(**tiny_kwargs(val_size=0.5, epochs=3)).fit(X[::2], y[::2], X[1::2],
                                                                        y[1::2])
    best = clf.history_[clf.best_epoch_ - 1]
    assert best["val_accuracy"] == pytest.approx(clf.score(X[1::2], y[1::2]))


def test_plateau_waits_for_each_phases_own_warmup(textures):
    phases = [Phase(2, 0), Phase(5, 0, warmup_epochs=2)]
    clf = fit(textures, schedule=phases, epochs=None, lr=1e-30, lr_decay="plateau", augment=None,
              head="linear")
    second = [row["lr"] for row in clf.history_ if row["phase"] == "phase2"]
    # Warmup over epochs 1-2; plateau counts from epoch 2: best, flat, flat → cut after epoch 4.
    assert second[2:] == pytest.approx([1e-30, 1e-30, 1e-31], rel=1e-6, abs=0)


def test_depthwise_convs_train_in_fp32_under_cpu_bf16_autocast_and_are_restored():
    from easytl.models.depthwise import fp32_depthwise_training
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(4, 8, 1), torch.nn.Conv2d(8, 8, 3, padding=1, groups=8))
    depthwise = model[1]
    keys = list(model.state_dict())
    x = torch.randn(2, 4, 6, 6)
    with fp32_depthwise_training(model) as n_patched:
        assert n_patched == 1  # the pointwise conv is left alone
        with torch.autocast("cpu", dtype=torch.bfloat16):
            trained = model(x)
            with torch.no_grad():
                inferred = model(x)
        assert list(model.state_dict()) == keys
    assert trained.dtype == torch.float32  # depthwise computed in fp32 while gradients flow
    assert inferred.dtype == torch.bfloat16  # inference keeps the faster bf16 path
    with torch.autocast("cpu", dtype=torch.bfloat16):
        pointwise = model[0](x)
    expected = torch.nn.functional.conv2d(pointwise.float(), depthwise.weight, depthwise.bias,
                                          padding=1, groups=8)
    torch.testing.assert_close(trained, expected, rtol=0, atol=0)
    assert "forward" not in vars(depthwise)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert model(x).dtype == torch.bfloat16  # outside the block: plain autocast again
