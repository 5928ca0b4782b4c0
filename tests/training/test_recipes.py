"""Small-data recipes: augmentation presets, MixUp/CutMix, label smoothing, EMA, accumulation,
the LR finder."""

import copy
import math
import warnings

import numpy as np
import pytest
import torch
from sklearn.base import clone
from torch import nn
from torchvision.transforms import v2

from easytl import Callback, Phase, TransferClassifier
from easytl.data.augment import per_image, strong_augment
from easytl.training.ema import WeightEMA, ema_decay
from easytl.training.mixing import BatchMixer
from easytl.training.tasks import MultiLabel, SingleLabel

from conftest import tiny_kwargs
from conftest import InterruptAt
from test_faults import SCHEDULE, assert_same_weights


# --------------------------------------------------------------------------- MixUp / CutMix

def test_mixup_targets_sum_to_one_and_mix_each_image_with_the_one_before():
    x = torch.rand(6, 3, 8, 8)
    labels = torch.tensor([0, 1, 2, 3, 0, 1])
    soft = SingleLabel().soft(labels, 4)
    mixed, targets, lam = BatchMixer(4, mixup=0.4)(x, soft, torch.Generator().manual_seed(1))
    assert 0 < lam < 1
    torch.testing.assert_close(targets.sum(1), torch.ones(6))
    for i in range(6):  # image i is mixed with image i - 1 (image 0 with the last)
        j = (i - 1) % 6
        torch.testing.assert_close(mixed[i], lam * x[i] + (1 - lam) * x[j])
        assert targets[i, labels[i]] >= lam - 1e-6 and targets[i, labels[j]] >= 1 - lam - 1e-6
    again = BatchMixer(4, mixup=0.4)(x, soft, torch.Generator().manual_seed(1))
    assert again[2] == lam  # the fit's generator makes it repeatable


def test_cutmix_pastes_a_box_and_weights_targets_by_its_area():
    x = torch.zeros(4, 3, 16, 16) + torch.arange(4.0)[:, None, None, None]  # image i is all i
    soft = SingleLabel().soft(torch.tensor([0, 1, 2, 3]), 4)
    mixed, targets, lam = BatchMixer(4, cutmix=1.0)(x, soft, torch.Generator().manual_seed(3))
    for i in range(4):
        own = (mixed[i] == i).float().mean().item()
        partner = (mixed[i] == (i - 1) % 4).float().mean().item()
        assert own + partner == 1.0 and own == pytest.approx(lam)  # λ is the pasted area's
        assert targets[i, i] == pytest.approx(lam) and targets[i, (i - 1) % 4] == pytest.approx(1 - lam)
    # pooled features have no spatial map: a CutMix batch mixes as MixUp there
    features = torch.rand(4, 5)
    mixed, _, lam = BatchMixer(4, cutmix=1.0)(features, soft, torch.Generator().manual_seed(3))
    torch.testing.assert_close(mixed, lam * features + (1 - lam) * features.roll(1, 0))


def test_multi_label_targets_mix_as_indicator_rows():
    rows = torch.tensor([[1, 0, 1], [0, 1, 0]], dtype=torch.float32)
    _, targets, lam = BatchMixer(3, mixup=1.0)(torch.rand(2, 4), MultiLabel().soft(rows, 3),
                                               torch.Generator().manual_seed(0))
    torch.testing.assert_close(targets, lam * rows + (1 - lam) * rows.roll(1, 0))


# --------------------------------------------------------------------------- label smoothing

def test_label_smoothing_changes_the_loss_by_the_known_amount():
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]])
    labels = torch.tensor([0, 2])
    eps = 0.1
    log_p = torch.log_softmax(logits, 1)
    nll = -log_p[torch.arange(2), labels].mean()
    uniform = -log_p.mean(1).mean()  # cross-entropy against the uniform distribution
    smoothed = SingleLabel().loss(None, eps)(logits, labels)
    torch.testing.assert_close(smoothed, (1 - eps) * nll + eps * uniform)
    rows = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    expected = nn.functional.binary_cross_entropy_with_logits(logits, rows * (1 - eps) + eps / 2)
    torch.testing.assert_close(MultiLabel().loss(None, eps)(logits, rows), expected)
    torch.testing.assert_close(MultiLabel().loss(None, 0.0)(logits, rows),
                               nn.functional.binary_cross_entropy_with_logits(logits, rows))


# --------------------------------------------------------------------------- EMA

def test_ema_weights_equal_the_hand_computed_average_after_three_steps():
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    ema = WeightEMA(0.9)
    ema.begin_phase(model, resuming=False)
    weights = []
    for step in range(3):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))  # an "optimizer step"
        weights.append(copy.deepcopy(model.state_dict()))
        ema.after_update(model)
    expected = {}
    for key in weights[0]:
        average = weights[0][key]                    # the first update copies
        for n in (1, 2):
            d = ema_decay(0.9, n)                    # min(0.9, (1 + n) / (10 + n)): warm-up
            average = d * average + (1 - d) * weights[n][key]
        expected[key] = average
    assert ema_decay(0.9, 1) == pytest.approx(2 / 11) and ema_decay(0.9, 1000) == 0.9
    ema.before_validation(model)                     # validation sees the average
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, expected[key])
    ema.begin_epoch(model)                           # training goes on from the raw weights
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, weights[-1][key])


def test_fit_with_ema_keeps_the_averaged_weights(textures):
    X, y = textures

    class Raw(Callback):
        def on_batch_end(self, batch, logs=None):
            self.last = copy.deepcopy(self.trainer.model.state_dict())

    raw = Raw()
    clf = TransferClassifier(**tiny_kwargs(schedule=[Phase(3, "all")], epochs=None, ema=0.5,
                                           val_size=0, callbacks=[raw])).fit(X, y)
    plain = TransferClassifier(**tiny_kwargs(schedule=[Phase(3, "all")], epochs=None,
                                             val_size=0)).fit(X, y)
    # the same training steps (the average never feeds back), but the model kept is the average
    for key, value in plain.model_.state_dict().items():
        torch.testing.assert_close(raw.last[key], value)
    changed = [k for k, v in clf.model_.state_dict().items()
               if v.dtype.is_floating_point and not torch.equal(v, raw.last[k])]
    assert changed


@pytest.mark.slow  # ~4-6 s of fitting: keeps the fast subset under 5 min
@pytest.mark.parametrize("recipe", [dict(ema=0.9), dict(mixup=0.4, cutmix=1.0, label_smoothing=0.1)])
def test_resume_with_recipes_ends_with_the_uninterrupted_weights(textures, tmp_path, recipe):
    X, y = textures
    kwargs = tiny_kwargs(schedule=SCHEDULE, epochs=None, **recipe)
    full = TransferClassifier(**kwargs).fit(X, y, checkpoint_dir=tmp_path / "full")
    stopped = TransferClassifier(**kwargs, callbacks=[InterruptAt(4)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stopped.fit(X, y, checkpoint_dir=tmp_path / "run")
    resumed = clone(stopped).set_params(callbacks=None)
    resumed.fit(X, y, checkpoint_dir=tmp_path / "run", resume=True)
    assert_same_weights(resumed.model_.state_dict(), full.model_.state_dict())


# --------------------------------------------------------------------------- accumulation

class FirstGradient(Callback):
    def on_after_backward(self, batch, logs=None):
        if not hasattr(self, "grads"):
            self.grads = {n: p.grad.clone() for n, p in self.trainer.model.named_parameters()
                          if p.grad is not None}


def test_accumulating_four_batches_of_8_gives_the_gradient_of_one_batch_of_32(textures):
    X, y = textures
    grads = []
    for batch_size, accumulate in ((32, 1), (8, 4)):
        first = FirstGradient()
        TransferClassifier(**tiny_kwargs(schedule=[Phase(1, "all")], epochs=None, augment=None,
                                         val_size=0, batch_size=batch_size, accumulate=accumulate,
                                         callbacks=[first])).fit(X, y)
        grads.append(first.grads)
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 4
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], rtol=1e-4, atol=1e-6)


def test_accumulation_steps_the_optimizer_once_per_group(textures):
    X, y = textures

    class Steps(Callback):
        steps = 0

        def on_after_backward(self, batch, logs=None):
            Steps.steps += 1
    TransferClassifier(**tiny_kwargs(schedule=[Phase(1, "all")], epochs=None, val_size=0,
                                     batch_size=8, accumulate=3, callbacks=[Steps()])).fit(X, y)
    assert Steps.steps == math.ceil(math.ceil(len(X) / 8) / 3)  # 10 batches: 3 + 3 + 3 + 1


# --------------------------------------------------------------------------- augmentation

def test_strong_augmentation_is_seeded_and_leaves_the_global_generator_alone():
    images = (torch.rand(4, 3, 40, 40) * 255).to(torch.uint8)
    torch.manual_seed(5)
    expected_next = torch.rand(3)
    torch.manual_seed(5)
    a = strong_augment(images, 32, torch.Generator().manual_seed(0))
    assert torch.equal(torch.rand(3), expected_next)  # the global RNG did not move
    b = strong_augment(images, 32, torch.Generator().manual_seed(0))
    c = strong_augment(images, 32, torch.Generator().manual_seed(1))
    assert a.shape == (4, 3, 32, 32) and 0 <= a.min() and a.max() <= 1
    assert torch.equal(a, b) and not torch.equal(a, c)
    # each image gets its own draw: a batch of one image repeated does not come out identical
    same = per_image(v2.RandomErasing(p=1.0), images[:1].repeat(6, 1, 1, 1).float(),
                     torch.Generator().manual_seed(0))
    erased = [(s != images[0].float()).any(0) for s in same]
    assert any(not torch.equal(erased[0], e) for e in erased[1:])


def test_a_strong_fit_with_a_seed_is_repeatable(textures):
    X, y = textures
    first, second = (TransferClassifier(**tiny_kwargs(augment="strong")).fit(X, y) for _ in range(2))
    np.testing.assert_array_equal(first.predict_proba(X), second.predict_proba(X))
    assert first.history_.column("train_loss") == second.history_.column("train_loss")


def test_augment_callable_gets_uint8_images_and_the_seeded_generator(textures):
    X, y = textures
    seen = []

    def invert(images, generator):
        seen.append((images.dtype, type(generator)))
        return 255 - images
    TransferClassifier(**tiny_kwargs(augment=invert, epochs=1, cache_features=False)).fit(X, y)
    assert seen and set(seen) == {(torch.uint8, torch.Generator)}
    clf = TransferClassifier(**tiny_kwargs(augment=v2.RandomHorizontalFlip(), epochs=1)).fit(X, y)
    assert clf.predict(X[:3]).shape == (3,)


# --------------------------------------------------------------------------- LR finder

def test_lr_finder_suggests_an_lr_inside_the_sweep_below_the_explosion(textures, tmp_path):
    from easytl import plot_lr_find
    X, y = textures
    clf = TransferClassifier(**tiny_kwargs(schedule=[Phase(30, "all")], epochs=None))
    result = clf.lr_find(X, y, start_lr=1e-5, end_lr=100, num_steps=60)
    assert not hasattr(clf, "model_")  # the estimator itself stays unfitted
    assert result.diverged_at is not None and len(result.lrs) <= 60
    assert result.lrs.min() <= result.suggestion <= result.lrs.max()
    assert result.suggestion < result.diverged_at and result.suggestion <= result.min_loss_lr
    assert np.all(np.diff(result.lrs) > 0) and result.phase == "phase1"
    plot_lr_find(result, path=tmp_path / "lr.png")
    assert (tmp_path / "lr.png").stat().st_size > 1000
    auto = TransferClassifier(**tiny_kwargs(schedule=[Phase(30, "all")], epochs=None, lr="auto"))
    auto.fit(X, y)
    assert auto.lr_ == auto.lr_find_.suggestion and auto.history_[0]["lr"] <= auto.lr_


def test_recipe_parameters_are_validated_and_stored(textures, tmp_path):
    X, y = textures
    for bad, message in ((dict(mixup=-1), "mixup must be None or a number > 0"),
                         (dict(ema=1.0), "ema must be None or a number > 0 and < 1"),
                         (dict(accumulate=0), "accumulate must be an integer >= 1"),
                         (dict(label_smoothing=1.0), "label_smoothing must be a number >= 0 and < 1"),
                         (dict(augment="heavy"), "augment must be")):
        with pytest.raises(ValueError, match=message):
            TransferClassifier(**tiny_kwargs(**bad)).fit(X, y)
    recipe = dict(mixup=0.2, cutmix=1.0, label_smoothing=0.1, ema=0.99, accumulate=2, augment="strong")
    clf = TransferClassifier(**tiny_kwargs(epochs=1, **recipe)).fit(X, y)
    loaded = TransferClassifier.load(clf.save(tmp_path / "m.easytl"), backbone=clf.backbone)
    assert {k: loaded.get_params()[k] for k in recipe} == recipe


@pytest.mark.slow  # an LR sweep and a fit through the CLI
def test_cli_lr_find_and_fit_with_recipe_flags(digit_folder, tmp_path, capsys):
    from easytl.cli import main
    plot = tmp_path / "lr.png"
    # Fine-tuning from a new head with enough steps for a suggestion (batch 4: 6 steps per epoch).
    assert main(["lr-find", str(digit_folder), "--image-size", "32", "--steps", "30", "--start-lr", "1e-4",
                 "--end-lr", "10", "--schedule", "fine_tune", "--batch-size", "4", "--plot", str(plot),
                 "--verbose", "0"]) == 0
    out = capsys.readouterr().out
    suggested = float(out.split("suggested lr ")[1].split()[0])
    assert 1e-4 < suggested < 10 and f"--lr {suggested:.2g}" in out and plot.stat().st_size > 1000
    model = tmp_path / "m.easytl"
    assert main(["fit", str(digit_folder), "--out", str(model), "--image-size", "32", "--epochs", "2",
                 "--schedule", "fine_tune", "--mixup", "0.2", "--label-smoothing", "0.1",
                 "--ema", "0.9", "--accumulate", "2", "--augment", "strong", "--lr", "auto",
                 "--verbose", "0"]) == 0
    params = TransferClassifier.load(model).get_params()
    assert (params["mixup"], params["label_smoothing"], params["ema"], params["accumulate"],
            params["augment"], params["lr"]) == (0.2, 0.1, 0.9, 2, "strong", "auto")
