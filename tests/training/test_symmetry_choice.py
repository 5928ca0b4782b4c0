"""The symmetry test after the probe: vertical flips and quarter turns join the augmentation
only when the held-out images score as well flipped and turned as upright."""

import numpy as np
import pytest
import torch
from torch import nn

from easytl import TransferClassifier
from easytl.training import symmetry
from easytl.training.symmetry import augmentation_for, compare_losses

from conftest import tiny_kwargs


def test_a_symmetry_passes_only_when_shown_to_keep_what_the_probe_knows():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2, 3], 100)  # prior loss: log 4 = 1.39 nats
    upright = rng.exponential(0.3, 400)     # the probe knows about 1.1 nats
    same = upright + rng.normal(0, 0.3, 400)        # no systematic change
    worse = upright + 1.0 + rng.normal(0, 0.3, 400)  # digits upside down
    tests = compare_losses(upright, {"vertical flip": same, "quarter turn": worse}, labels)
    assert [t.passed for t in tests] == [True, False]
    assert tests[0].prior_loss == pytest.approx(np.log(4))
    assert tests[1].increase == pytest.approx(1.0, abs=0.05)
    assert augmentation_for(tests) == "flips"
    every = compare_losses(upright, {"vertical flip": same, "quarter turn": same[::-1],
                                     "mirror image": same[::2].repeat(2)}, labels)
    assert augmentation_for(every) == "turns"
    # a vertical flip after a half turn is the mirror image: the two generate all eight
    assert augmentation_for(every[:2]) == "turns"
    # a quarter turn alone adds nothing: with the default's mirror image it would imply the flip
    assert augmentation_for(compare_losses(upright, {"vertical flip": worse,
                                                     "quarter turn": same}, labels)) is None
    # missing evidence never passes: few images, or a probe no better than the class frequencies
    few = compare_losses(upright[:20], {"vertical flip": upright[:20] + rng.normal(0, 0.01, 20)},
                         labels[::20])
    assert few[0].increase < 0.01 and not few[0].passed and "too few" in symmetry.note(few, None)
    clueless = compare_losses(np.full(400, 1.5), {"vertical flip": np.full(400, 1.5)}, labels)
    assert not clueless[0].passed and "no better than the class frequencies" in \
        symmetry.note(clueless, None)
    assert compare_losses(upright[:1], {"vertical flip": same[:1]}, labels[:1])[0].describe()[
        "standard_error"] is None  # (JSON-safe)


def test_a_symmetry_that_confuses_two_classes_of_ten_does_not_pass_on_the_other_eight():
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(10), 40)
    upright = rng.exponential(0.2, 400)
    flipped = upright + rng.normal(0, 0.05, 400)
    flipped[labels < 2] += 2.0  # upside down, a 6 is a 9 and a 9 a 6
    test = compare_losses(upright, {"vertical flip": flipped}, labels)[0]
    # over all images the increase (0.4) is within a quarter of what the probe knows (2.1) ...
    assert test.increase + 2 * test.standard_error < 0.25 * test.probe_knows
    # ... but class 0 shows it does not keep its class
    assert not test.passed and test.worst_class == "0"
    assert "not shown to keep for class '0'" in symmetry.note([test], None)


def test_a_mirror_image_shown_to_harm_takes_the_flip_out_of_the_default():
    rng = np.random.default_rng(2)
    labels = np.repeat(np.arange(10), 40)       # prior loss: log 10 = 2.3 nats
    upright = rng.exponential(0.25, 400)         # the probe knows about 2 nats
    noise = rng.normal(0, 0.3, 400)
    # digits at 32 px: mirrored, they score 0.6 nats worse (well over 5% of 2 nats, and more
    # than the quarter of it a symmetry may cost)
    digits = compare_losses(upright, {"vertical flip": upright + 1.0 + noise,
                                      "mirror image": upright + 0.6 + noise}, labels)
    assert digits[1].harmful and not digits[1].passed
    assert augmentation_for(digits) == "no_mirror"
    assert "mirror image +0.58" in symmetry.note(digits, "no_mirror") and \
        "shown to change the classes" in symmetry.note(digits, "no_mirror")
    # photos (or digits at 96 px): ImageNet features barely tell a mirror image apart
    photos = compare_losses(upright, {"vertical flip": upright + 1.0 + noise,
                                      "mirror image": upright + 0.05 + noise}, labels)
    assert not photos[1].harmful and augmentation_for(photos) is None
    # a harmful mirror outranks symmetries that passed: flips and turns include mirror images
    textures = compare_losses(upright, {"vertical flip": upright + noise / 10,
                                        "quarter turn": upright + noise / 10,
                                        "mirror image": upright + 0.6 + noise}, labels)
    assert textures[0].passed and augmentation_for(textures) == "no_mirror"
    # missing evidence shows no harm either: a probe that knows nothing, or little (its loss
    # 0.6% below the class frequencies': 5% of that would be no bar at all), or few images
    assert not compare_losses(np.full(400, 2.5), {"mirror image": np.full(400, 3.5)},
                              labels)[0].harmful
    weak = np.log(10) - 0.013 + rng.normal(0, 0.01, 400)
    assert not compare_losses(weak, {"mirror image": weak + 0.04}, labels)[0].harmful
    assert not compare_losses(upright[:20], {"mirror image": upright[:20] + 1.0},
                              labels[::20])[0].harmful
    # every transform costs a little from the features alone (orientation-free classes): the
    # mirror, shown to keep most of what the probe knows, is not harmful, and all three pass
    features = compare_losses(upright, {name: upright + 0.2 + noise / 30 for name in
                                        ("vertical flip", "quarter turn", "mirror image")}, labels)
    assert all(t.passed and not t.harmful for t in features)
    assert augmentation_for(features) == "turns"


def _stripes(n_per_class=150, size=32, orientation=True, label_noise=0.1, seed=0):
    """Bright vs dark images of stripes; the class is the stripes' direction (orientation=True:
    a quarter turn changes it, a vertical flip does not) or the brightness (every symmetry keeps
    it). Some labels are wrong, so that the probe is not perfect and fine-tuning follows."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for k in range(2 * n_per_class):
        cls = k % 2
        period = int(rng.integers(4, 8))
        rows = (np.arange(size) // (period // 2)) % 2
        stripes = np.tile(rows[:, None], (1, size)) if (cls if orientation else k // 2 % 2) \
            else np.tile(rows[None, :], (size, 1))
        level = 0.5 if orientation else (0.25 if cls else 0.75)
        image = np.clip(level + 0.5 * (stripes - 0.5) + rng.normal(0, 0.05, (size, size)), 0, 1)
        images.append(np.repeat(image[..., None], 3, -1))
        labels.append(cls if rng.random() > label_noise else 1 - cls)
    return (np.stack(images) * 255).astype(np.uint8), np.array(["a", "b"])[labels]


def _edges_and_brightness() -> nn.Module:
    """A backbone whose features are exactly what the stripes' classes need: mean brightness
    and the strength of horizontal and of vertical edges (Sobel filters, both signs)."""
    sobel = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
    kernels = torch.stack([sobel, -sobel, sobel.T, -sobel.T, torch.full((3, 3), 1.0)])
    conv = nn.Conv2d(3, 5, 3, padding=1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(kernels[:, None].expand(5, 3, 3, 3) / 3)
    return nn.Sequential(conv, nn.BatchNorm2d(5), nn.ReLU())


@pytest.mark.parametrize("orientation, expected", [(True, "flips"), (False, "turns")])
def test_the_plan_adds_the_symmetries_the_data_has(monkeypatch, orientation, expected):
    from easytl.data import augment
    from easytl.training import adaptive
    monkeypatch.setattr(adaptive, "FINE_TUNE_EPOCHS", 1)
    monkeypatch.setattr(adaptive, "MIN_FINE_TUNE_STEPS", 1)
    monkeypatch.setattr(adaptive, "WEAK_PROBE_BELOW", 0.0)  # keep the short top-3 plan
    used = []
    for name in ("vertical_flips", "square_symmetries"):
        original = getattr(augment, name)
        monkeypatch.setattr(augment, name, lambda x, g, f=original, name=name: used.append(name)
                            or f(x, g))
    X, y = _stripes(orientation=orientation)
    clf = TransferClassifier(**tiny_kwargs(backbone=_edges_and_brightness(), schedule="auto",
                                           epochs=None, head="auto", val_size="auto")).fit(X, y)
    probe = clf.history_[0]
    tests = probe["symmetries"]
    assert tests["vertical flip"]["passed"] is True
    assert tests["quarter turn"]["passed"] is (expected == "turns")
    assert probe["augment"] == expected and f"augment={expected!r}" in probe["note"]
    assert clf.plan_["symmetries"] == {"tests": tests, "recipe": expected}
    assert tests["quarter turn"]["worst_class"] in (None, "a", "b")  # named by label, not index
    assert len(clf.history_) > 1 and set(used) == {"vertical_flips" if expected == "flips"
                                                   else "square_symmetries"}


def test_the_plan_takes_mirror_images_out_when_they_change_the_class(monkeypatch, capsys):
    """Brightness rising left to right or right to left: a mirror image swaps the classes."""
    from easytl.data import augment
    from easytl.training import adaptive
    monkeypatch.setattr(adaptive, "FINE_TUNE_EPOCHS", 1)
    monkeypatch.setattr(adaptive, "MIN_FINE_TUNE_STEPS", 1)
    monkeypatch.setattr(adaptive, "WEAK_PROBE_BELOW", 0.0)
    mirrored = []
    original = augment.default_augment
    monkeypatch.setattr(augment, "default_augment", lambda *a, mirror=True, **k: mirrored.append(
        mirror) or original(*a, mirror=mirror, **k))
    rng = np.random.default_rng(0)
    ramp = np.linspace(0.2, 0.8, 32)[None, :].repeat(32, 0)
    y = np.array(["rises", "falls"])[np.arange(300) % 2]
    images = np.stack([ramp if c == "rises" else ramp[:, ::-1] for c in y])
    images = np.clip(images + rng.normal(0, 0.05, images.shape), 0, 1)
    X = (np.repeat(images[..., None], 3, -1) * 255).astype(np.uint8)
    y = np.where(rng.random(300) < 0.1, y[::-1], y)  # some labels wrong: fine-tuning follows
    clf = TransferClassifier(**tiny_kwargs(backbone=_edges_and_brightness(), schedule="auto",
                                           epochs=None, head="auto", val_size="auto",
                                           verbose=1)).fit(X, y)
    probe = clf.history_[0]
    assert probe["symmetries"]["mirror image"]["harmful"] is True
    # the progress says the plan once, then only what the probe decided; no bar in a log
    err = capsys.readouterr().err
    plan_sentence = probe["note"].split("; the probe knows")[0]
    from easytl.training.callbacks.progress import note_lines  # printed a clause a line
    assert err.count("easytl plan:") == 1 and err.count(note_lines("easytl plan", plan_sentence)) == 1
    assert "\neasytl after the probe: the probe knows" in err and "\r" not in err
    assert probe["augment"] == "no_mirror" and "augment='no_mirror'" in probe["note"]
    assert clf.plan_["symmetries"]["recipe"] == "no_mirror"
    assert len(clf.history_) > 1 and mirrored and not any(mirrored)  # trained without the flip
    # ... and predicted without mirror images under test-time augmentation
    views = []
    original_views = augment.Preprocessor.test_time_views
    monkeypatch.setattr(augment.Preprocessor, "test_time_views", lambda self, *a, **k: views.append(
        original_views(self, *a, **k)) or views[-1])
    clf.predict_tta(X[:6], n_augment=4)

    def rises(view):  # per image: is the right side brighter than the left?
        return view[:, 0, :, -8:].mean((1, 2)) > view[:, 0, :, :8].mean((1, 2))
    assert len(views[0]) == 4 and all(torch.equal(rises(v), rises(views[0][0])) for v in views[0])


def test_tta_follows_the_recipe_the_model_trained_with_not_the_parameter_now(monkeypatch):
    from easytl.data import augment
    X, y = _stripes(n_per_class=12)
    clf = TransferClassifier(**tiny_kwargs(augment="no_mirror")).fit(X, y)
    assert clf.plan_["augment"] == "no_mirror"
    mirror_views = []
    original = augment.Preprocessor.test_time_views
    monkeypatch.setattr(augment.Preprocessor, "test_time_views", lambda self, *a, **k: mirror_views.append(
        a[3] if len(a) > 3 else k.get("mirror", True)) or original(self, *a, **k))
    clf.set_params(augment="default").predict_tta(X[:4], n_augment=3)  # a later set_params
    assert mirror_views == [False]
    light = TransferClassifier(**tiny_kwargs(augment="light")).fit(X, y)
    light.set_params(augment="no_mirror").predict_tta(X[:4], n_augment=3)
    assert mirror_views == [False, True] and light.plan_["augment"] == "light"


@pytest.mark.slow
def test_a_resumed_fit_trains_with_the_symmetries_its_probe_found(tmp_path, monkeypatch):
    import warnings
    from conftest import InterruptAt
    from easytl.training import adaptive
    monkeypatch.setattr(adaptive, "FINE_TUNE_EPOCHS", 2)
    monkeypatch.setattr(adaptive, "MIN_FINE_TUNE_STEPS", 1)
    monkeypatch.setattr(adaptive, "WEAK_PROBE_BELOW", 0.0)
    X, y = _stripes(orientation=False)
    kwargs = tiny_kwargs(backbone=_edges_and_brightness(), schedule="auto", epochs=None,
                         head="auto", val_size="auto")
    full = TransferClassifier(**kwargs).fit(X, y)
    assert full.history_[0]["augment"] == "turns" and len(full.history_) == 3
    stopped = TransferClassifier(**dict(kwargs, backbone=_edges_and_brightness()),
                                 callbacks=[InterruptAt(2)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stopped.fit(X, y, checkpoint_dir=tmp_path)
    resumed = TransferClassifier(**dict(kwargs, backbone=_edges_and_brightness())).fit(
        X, y, checkpoint_dir=tmp_path, resume=True)
    # the same training, epoch by epoch (the weights kept may be the probe's: the best epoch)
    assert [row["train_loss"] for row in resumed.history_] == pytest.approx(
        [row["train_loss"] for row in full.history_], rel=1e-5)


def test_the_added_symmetries_reach_a_cached_phase(monkeypatch):
    from easytl.data import augment
    from easytl.training import adaptive
    monkeypatch.setattr(adaptive, "FINE_TUNE_EPOCHS", 1)
    monkeypatch.setattr(adaptive, "MIN_FINE_TUNE_STEPS", 1)
    monkeypatch.setattr(adaptive, "WEAK_PROBE_BELOW", 0.0)
    used = []
    original = augment.square_symmetries
    monkeypatch.setattr(augment, "square_symmetries", lambda x, g: used.append(len(x)) or original(x, g))
    backbone = _edges_and_brightness()
    for _ in range(3):  # three more groups on top of the edges: the top 3 leave it frozen, cached
        conv = nn.Conv2d(5, 5, 1)
        with torch.no_grad():
            conv.weight.copy_(torch.eye(5)[:, :, None, None])
            conv.bias.zero_()
        backbone.append(conv)
    X, y = _stripes(orientation=False)
    clf = TransferClassifier(**tiny_kwargs(backbone=backbone, schedule="auto", epochs=None,
                                           head="auto", val_size="auto", cache_features=True))
    clf.fit(X, y)
    assert clf.history_[0]["augment"] == "turns" and clf.plan_["cache_phases"] == [True, True]
    assert sum(used) == clf.plan_["n_train"]  # the cached view of every training image was turned


def test_a_named_recipe_is_left_alone_and_a_few_shot_plan_tests_its_training_images(textures):
    X, y = _stripes()
    light = TransferClassifier(**tiny_kwargs(schedule="auto", epochs=None, head="auto",
                                             val_size="auto", augment="light"))
    light.fit(X, y)
    assert light.plan_["test_symmetries"] is False and "symmetries" not in light.history_[0]
    assert "augment='light'" in light.plan_["note"]  # the plan says the recipe was heard
    X, y = textures  # 20 per class: few-shot, nothing held out: the training images, cross-fitted
    y = np.where(np.arange(len(y)) % 5 == 0, np.roll(y, 20), y)  # noisy: the probe is not perfect
    few = TransferClassifier(**tiny_kwargs(schedule="auto", epochs=None, head="auto",
                                           val_size="auto")).fit(X, y)
    assert few.plan_["test_symmetries"] is True and few.plan_["n_val"] == 0
    probe = few.history_[0]
    assert probe["symmetry_evidence"] == "training (cross-fitted)"
    assert probe["symmetries"]["mirror image"]["n_images"] == len(y)


def test_a_vertical_flip_that_passed_is_said_not_to_be_added_when_mirror_images_leave():
    labels = np.repeat(np.arange(4), 40)
    upright = np.full(160, 0.2)
    noise = np.random.default_rng(0).normal(0, 0.05, 160)
    tests = compare_losses(upright, {"vertical flip": upright + noise / 10,
                                     "mirror image": upright + 1.0 + noise}, labels)
    assert tests[0].passed and augmentation_for(tests) == "no_mirror"
    assert "vertical flip +0.00 ± 0.00 (shown to keep, not added" in symmetry.note(tests, "no_mirror")
