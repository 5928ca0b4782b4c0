"""Defaults that adapt to the data: input size, plan, training length, the probe."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from easytl import FeatureExtractor, Phase, TransferClassifier
from easytl.plan import DataFacts, decide_val_size, make_plan
from easytl.training.adaptive import (ALL_LAYERS_PER_CLASS, FEW_SHOT_PER_CLASS,
                                      MAX_FINE_TUNE_STEPS, MIN_FINE_TUNE_STEPS, auto_image_size,
                                      fine_tune_epochs, median_short_side)
from easytl.data.sources import as_image_source

from conftest import tiny_kwargs


@pytest.mark.parametrize("native, expected", [
    (8, 96),      # scikit-learn digits: x6 = 48, raised to the 96 px floor
    (20, 128),    # small photos: x6 = 120, to the nearest multiple of 32
    (25, 160),
    (32, 192),
    (40, 224),    # x6 = 240: capped at the pretrained size
    (64, 224),
    (224, 224),   # photos at or above the pretrained size keep it
    (3000, 224),
])
def test_size_rule(native, expected):
    assert auto_image_size(native, 224) == expected
    assert auto_image_size(native, 224) % 32 == 0


def test_native_size_is_the_median_shorter_side_of_files_and_arrays(tmp_path):
    from PIL import Image
    paths = []
    for i, (w, h) in enumerate([(40, 30), (50, 20), (300, 100), (20, 90), (35, 35)]):
        Image.new("RGB", (w, h)).save(tmp_path / f"{i}.png")
        paths.append(tmp_path / f"{i}.png")
    source, _ = as_image_source([str(p) for p in paths], size=16)
    assert median_short_side(source) == 30  # shorter sides 30, 20, 100, 20, 35
    array_source, _ = as_image_source(np.zeros((3, 8, 12, 3), np.uint8), size=16)
    assert median_short_side(array_source) == 8


def test_photos_keep_the_pretrained_size_and_small_images_are_upsampled_less():
    photos = np.random.default_rng(0).integers(0, 256, (4, 256, 300, 3), dtype=np.uint8)
    assert FeatureExtractor().fit(photos).image_size_ == 224
    digits = np.zeros((4, 8, 8), np.float32)
    assert FeatureExtractor().fit(digits).image_size_ == 96
    assert FeatureExtractor().fit().image_size_ == 224            # no images: pretrained size
    assert FeatureExtractor(image_size=64).fit(digits).image_size_ == 64


def test_classifier_records_the_chosen_size(digits, tmp_path):
    X, y = digits
    clf = TransferClassifier(**tiny_kwargs(image_size="auto", epochs=1)).fit(X[:60], y[:60])
    assert clf.image_size_ == 96
    loaded = TransferClassifier.load(clf.save(tmp_path / "m.easytl"), backbone=clf.backbone)
    assert loaded.image_size_ == 96


@pytest.mark.parametrize("n_train, size, epochs", [
    (200, 32, 9),        # 7 steps an epoch: stretched to the 60-step minimum (63 steps)
    (1213, 32, 6),       # 38 steps an epoch: 6 epochs
    (5000, 32, 4),       # 157 steps an epoch: 628 steps ~ the 600-step cap
    (100_000, 32, 1),    # 3125 steps an epoch: one epoch, never less
])
def test_fine_tuning_length_is_set_in_steps(n_train, size, epochs):
    tiny = 16  # a small input: the compute budget does not bind
    assert fine_tune_epochs(n_train, 32, size=tiny, pretrained=224) == epochs
    steps = epochs * -(-n_train // 32)
    assert steps >= MIN_FINE_TUNE_STEPS
    assert steps <= max(MAX_FINE_TUNE_STEPS * 1.1, -(-n_train // 32))


@pytest.mark.parametrize("size, budget", [(224, 2), (160, 3), (128, 6), (96, 10)])
def test_fine_tuning_compute_is_capped_by_the_input_size(size, budget):
    # 50 images would want 30 epochs (the 60-step minimum); the budget is 2 epochs at 224 px,
    # scaled by the pixels a smaller input saves.
    assert fine_tune_epochs(50, 32, size=size, pretrained=224) == budget


def auto_plan(counts, batch_size, lr=1e-3, size=96, pretrained=224, **params):
    """The FitPlan of the default estimator for these class sizes (no data needed)."""
    params = TransferClassifier(batch_size=batch_size, lr=lr, image_size=size, **params).get_params()
    facts = DataFacts(tuple(range(len(counts))), tuple(counts), False)
    val_size = decide_val_size(params, facts, False)
    n_val = round(sum(counts) * val_size)
    backbone = SimpleNamespace(data_config={"input_size": pretrained}, name="test", stages=[],
                               layer_groups=[])
    return make_plan(params, facts, seed=0, lr=lr, backbone=backbone, n_train=sum(counts) - n_val,
                     n_val=n_val, val_size=val_size)


def test_plan_by_data_size():
    few = auto_plan([10] * 10, 32)
    phases = few.phases
    assert few.val_size == 0 and [p.name for p in phases] == ["probe", "top3"]
    assert phases[0].probe and phases[1].epochs == 10  # 100 images: 15 epochs, budget 10 at 96 px
    assert "96 px" in few.note and "none held out" in few.note
    mid = auto_plan([FEW_SHOT_PER_CLASS] * 10, 32)
    assert mid.val_size == 0.1 and "held out" in mid.note
    assert mid.phases[1].lr == pytest.approx(3e-4)
    assert mid.phases[1].backbone_lr_mult == 1.0 and mid.phases[1].warmup_epochs == 0.5
    big = auto_plan([ALL_LAYERS_PER_CLASS] * 3, 32, size=224)
    assert big.phases[1].trainable_groups == "all" and big.phases[1].epochs == 1
    assert auto_plan([100] * 4, 32, lr=1e-2).phases[1].lr == pytest.approx(3e-3)


def test_explicit_backbone_lr_mult_and_warmup_reach_the_default_plan():
    # Before the FitPlan the adaptive plan silently replaced both with its own values.
    plan = auto_plan([100] * 4, 32, backbone_lr_mult=0.25, warmup_epochs=2)
    assert plan.phases[1].backbone_lr_mult == 0.25 and plan.phases[1].warmup_epochs == 2
    assert auto_plan([100] * 4, 32).phases[1].backbone_lr_mult == 1.0


def test_the_plan_length_counts_optimizer_updates():
    # accumulate=4 at batch 8 makes the updates of batch 32: the plan and the LR schedule count
    # updates, so the fine-tuning length equals batch 32's.
    plain = auto_plan([100] * 4, 32)
    accumulated = auto_plan([100] * 4, 8, accumulate=4)
    assert accumulated.phases[1].epochs == plain.phases[1].epochs
    assert accumulated.updates_per_epoch == plain.updates_per_epoch == 12


def test_the_probe_phase_is_scikit_learns_logistic_regression(textures):
    X, y = textures
    clf = TransferClassifier(**tiny_kwargs(schedule=[Phase(1, 0, probe=True)], head="linear",
                                           val_size=0, epochs=None)).fit(X, y)
    features = clf.transform(X)
    reference = LogisticRegression(C=1.0, max_iter=2000).fit(features, np.unique(y, return_inverse=True)[1])
    head = clf.model_.head
    np.testing.assert_allclose(head.weight.detach().numpy(), reference.coef_, atol=2e-3)
    np.testing.assert_allclose(clf.predict_proba(X), reference.predict_proba(features), atol=2e-3)
    assert clf.history_[0]["phase"] == "phase1" and clf.history_[0]["lr"] is None


def test_binary_probe_agrees_with_scikit_learn(textures):
    X, y = textures
    keep = np.isin(y, ["dots", "grid"])
    clf = TransferClassifier(**tiny_kwargs(schedule=[Phase(1, 0, probe=True)], head="linear",
                                           val_size=0, epochs=None)).fit(X[keep], y[keep])
    features = clf.transform(X[keep])
    reference = LogisticRegression(max_iter=2000).fit(features, y[keep])
    np.testing.assert_allclose(clf.predict_proba(X[keep]), reference.predict_proba(features), atol=2e-3)


def test_a_probe_needs_a_linear_head(textures):
    with pytest.raises(ValueError, match="linear head"):
        TransferClassifier(**tiny_kwargs(schedule=[Phase(1, 0, probe=True)], head="mlp",
                                         epochs=None)).fit(*textures)
    with pytest.raises(ValueError, match="trainable_groups must be 0"):
        Phase(1, 2, probe=True)


def test_default_plan_few_shot_trains_on_everything(textures):
    X, y = textures  # 20 per class: few-shot
    y = np.where(np.arange(len(y)) % 5 == 0, np.roll(y, 20), y)  # noisy: no perfect probe to stop at
    clf = TransferClassifier(**tiny_kwargs(schedule="auto", epochs=None, head="auto",
                                           val_size="auto")).fit(X, y)
    assert clf.validation_indices_ is None and clf.best_epoch_ is None
    assert [r["phase"] for r in clf.history_][:2] == ["probe", "top3"]
    assert "none held out" in clf.history_[0]["note"]
    assert isinstance(clf.model_.head, torch.nn.Linear)


def test_a_perfect_probe_ends_the_fit_and_says_so():
    from easytl import make_textures
    X, y = make_textures(n_per_class=40, size=32, random_state=0)  # 40 per class: 10% held out
    clf = TransferClassifier(**tiny_kwargs(backbone="efficientnet_lite0", schedule="auto",
                                           epochs=None, head="auto", val_size="auto")).fit(X, y)
    assert len(clf.validation_indices_) == 16
    assert [r["phase"] for r in clf.history_] == ["probe"] and clf.best_epoch_ == 1
    assert clf.history_[0]["val_accuracy"] == 1.0
    assert "fine-tuning skipped" in clf.history_[0]["note"]


def test_fine_tuning_that_hurts_falls_back_to_the_probe(textures):
    X, y = textures
    probe_only = TransferClassifier(**tiny_kwargs(schedule=[Phase(1, 0, probe=True)], head="linear",
                                                  epochs=None, val_size=0.25)).fit(X, y)
    wrecked = TransferClassifier(**tiny_kwargs(
        schedule=[Phase(1, 0, probe=True), Phase(2, "all", lr=50.0, name="all")], head="linear",
        epochs=None, val_size=0.25)).fit(X, y)
    assert wrecked.best_epoch_ == 1  # the probe's validation loss beat the wrecked epochs
    np.testing.assert_allclose(wrecked.predict_proba(X), probe_only.predict_proba(X), atol=1e-6)


def test_explicit_choices_keep_todays_behaviour(textures):
    X, y = textures
    clf = TransferClassifier(**tiny_kwargs(schedule="auto", epochs=5, head="auto",
                                           val_size="auto")).fit(X, y)
    # epochs given: the notebook's progressive recipe, its MLP head, 10% held out
    assert [r["phase"] for r in clf.history_] == ["head", "head", "top3", "top3", "all"]
    assert isinstance(clf.model_.head, torch.nn.Sequential)
    assert len(clf.validation_indices_) == 8


@pytest.fixture
def short_plans(monkeypatch):
    """Adaptive plans of 1 epoch (2 after a weak probe) on the tiny test data."""
    from easytl.training import adaptive
    monkeypatch.setattr(adaptive, "FINE_TUNE_EPOCHS", 1)
    monkeypatch.setattr(adaptive, "MIN_FINE_TUNE_STEPS", 1)


def _weak_probe_data():
    """Labels the tiny backbone's features cannot predict (40 per class: 10% held out)."""
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (80, 32, 32, 3), dtype=np.uint8), np.repeat(["a", "b"], 40)


def test_a_weak_probe_fine_tunes_every_layer_longer_and_says_why(monkeypatch, short_plans):
    from easytl.training import adaptive
    X, y = _weak_probe_data()
    kwargs = tiny_kwargs(schedule="auto", epochs=None, head="auto", val_size="auto")
    clf = TransferClassifier(**kwargs).fit(X, y)
    probe_row = clf.history_[0]
    assert probe_row["val_balanced_accuracy"] < adaptive.WEAK_PROBE_BELOW
    assert probe_row["weak_probe"] is True and "every layer fine-tunes instead" in probe_row["note"]
    deep = clf.phases_[-1]
    # the tiny backbone's two groups: nothing to spare beyond the top 3, so every layer trains
    assert (deep.trainable_groups, deep.layer_lr_decay) == ("all", adaptive.LAYER_LR_DECAY)
    planned = clf.plan_["planned_phases"][-1]  # what the plan would have run after a strong probe
    assert clf.plan_["phases"][-1]["name"] == "deep"  # plan_ describes what ran
    assert clf.plan_["note"] == probe_row["note"] and clf.plan_["cache_phases"][-1] is False
    assert planned["trainable_groups"] == adaptive.TOP_GROUPS
    assert deep.epochs == clf.plan_["if_probe_weak"]["phases"][0]["epochs"] > planned["epochs"]
    assert [r["phase"] for r in clf.history_] == ["probe"] + ["deep"] * deep.epochs
    assert clf.plan_["if_probe_weak"]["applied"] is True
    # the same data with the rule's bar at 0: today's plan, unchanged
    monkeypatch.setattr(adaptive, "WEAK_PROBE_BELOW", 0.0)
    strong = TransferClassifier(**kwargs).fit(X, y)
    assert [p.name for p in strong.phases_] == ["probe", "top3"]
    assert "weak_probe" not in strong.history_[0] and strong.plan_["if_probe_weak"]["applied"] is False


@pytest.mark.slow
def test_a_fit_that_went_deeper_resumes_in_the_deeper_phase(tmp_path, short_plans):
    import warnings
    from conftest import InterruptAt
    X, y = _weak_probe_data()
    kwargs = tiny_kwargs(schedule="auto", epochs=None, head="auto", val_size="auto")
    full = TransferClassifier(**kwargs).fit(X, y)
    stopped = TransferClassifier(**kwargs, callbacks=[InterruptAt(2)])  # in the first deep epoch
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stopped.fit(X, y, checkpoint_dir=tmp_path)
    resumed = TransferClassifier(**kwargs).fit(X, y, checkpoint_dir=tmp_path, resume=True)
    assert [r["phase"] for r in resumed.history_] == [r["phase"] for r in full.history_]
    assert [p.name for p in resumed.phases_] == ["probe", "deep"]
    # noise: the probe knows nothing, so the symmetry test shows nothing and adds nothing
    for fit in (full, resumed):
        tests = fit.history_[0]["symmetries"]
        assert "augment" not in fit.history_[0] and not any(t["passed"] for t in tests.values())
    for name, value in full.model_.state_dict().items():
        torch.testing.assert_close(resumed.model_.state_dict()[name], value)


def test_the_deeper_plan_spares_the_stem_of_a_real_backbone_and_caches_nothing():
    from easytl.models.adapters import create_backbone
    from easytl.training import adaptive
    backbone = create_backbone("efficientnet_lite0", weights=None)
    facts = DataFacts(classes=("a", "b"), counts=(400, 400), multi_label=False, native_side=224)
    params = TransferClassifier(backbone=backbone).get_params()
    plan = make_plan(params, facts, seed=0, lr=1e-3, backbone=backbone, n_train=720, n_val=80,
                     val_size=0.1)
    deep = plan.if_probe_weak.phases[0]
    assert deep.trainable_groups == len(backbone.layer_groups) - adaptive.DEEP_FROZEN_GROUPS == 7
    assert deep.name == "deep" and plan.if_probe_weak.cache_phases == (False,)
    assert adaptive.deep_groups(4) == "all"  # a small custom backbone trains every group
    assert "every layer but the stem" in plan.note


def test_layer_lr_decay_gives_each_lower_group_a_smaller_lr():
    from easytl.training.optimizers import make_optimizer
    groups = [[torch.nn.Parameter(torch.zeros(1))] for _ in range(3)]  # stem, middle, top
    head = [torch.nn.Parameter(torch.zeros(1))]
    opt = make_optimizer("adamw", head, groups, 1e-3, 1e-4, 0.0, layer_lr_decay=0.5)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([1e-3, 1e-4, 5e-5, 2.5e-5])
    assert opt.param_groups[-1]["params"][0] is groups[0][0]  # the stem gets the smallest
    flat = make_optimizer("adamw", head, groups, 1e-3, 1e-4, 0.0)
    assert [len(g["params"]) for g in flat.param_groups] == [1, 3]
    with pytest.raises(ValueError, match="layer_lr_decay"):
        Phase(1, "all", layer_lr_decay=0)
