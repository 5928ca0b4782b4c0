"""The frozen-feature cache: same results as recomputing, far fewer backbone passes."""

import pytest
import torch

from easytl import FeatureExtraction, Phase, TransferClassifier

from conftest import tiny_kwargs


def fit(textures, **overrides):
    return TransferClassifier(**tiny_kwargs(**overrides)).fit(*textures)


def assert_same_weights(a, b, atol):
    sa, sb = a.model_.state_dict(), b.model_.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        torch.testing.assert_close(sa[key], sb[key], atol=atol, rtol=1e-4, msg=key)


def test_head_only_cache_matches_recomputing(textures):
    settings = dict(schedule=FeatureExtraction(epochs=3), epochs=None, augment=None)
    cached = fit(textures, cache_features="auto", **settings)
    plain = fit(textures, cache_features=False, **settings)
    assert_same_weights(cached, plain, atol=1e-5)
    assert [r["val_loss"] for r in cached.history_] == \
        pytest.approx([r["val_loss"] for r in plain.history_], rel=1e-4)


@pytest.mark.slow  # several Lite0 passes (~7 s): the fast subset stays under 5 min
def test_frozen_lower_stages_cache_matches_recomputing(textures):
    # resnet18's stages: stem, layer1, layer2, layer3, layer4+pool; phase 2 trains the top two.
    settings = dict(backbone="resnet18", weights=None, schedule=[Phase(1, 0), Phase(2, 2)],
                    epochs=None, augment=None, lr=1e-3)
    cached = fit(textures, cache_features="auto", **settings)
    plain = fit(textures, cache_features=False, **settings)
    # The cache runs the frozen stem with BatchNorm folded into its convolutions: the same
    # activations up to float rounding, which AdamW can turn into steps of up to lr (1e-3) on
    # near-zero gradients; the losses agree to rounding.
    assert_same_weights(cached, plain, atol=1e-3)
    assert [r["train_loss"] for r in cached.history_] == \
        pytest.approx([r["train_loss"] for r in plain.history_], rel=1e-5)


def stem_images(monkeypatch, textures, **settings):
    """Fit, counting the images that pass through the backbone's first stage."""
    from easytl.models import adapters
    build = adapters.create_backbone
    seen = []

    def create_and_hook(*args, **kwargs):
        backbone = build(*args, **kwargs)
        backbone.stages[0].register_forward_hook(lambda m, inputs, out: seen.append(len(inputs[0])))
        return backbone

    monkeypatch.setattr("easytl.classifier.create_backbone", create_and_hook)
    fit(textures, backbone="resnet18", weights=None, **settings)
    return sum(seen)


# After training, one more pass over the training and validation images (64 + 16) computes
# the calibration and novelty statistics (TrustStatistics), with BatchNorm folded: the folded
# copy is checked against the original on two images per feed (2 x 2 x 2 more).
TRUST_PASS = 64 + 16 + 8
# Each cache build runs the frozen stages BatchNorm-folded too: the folded copy is checked
# against the original on two images (2 x 2 more per build).
FOLD_CHECK = 4


@pytest.mark.slow  # a few seconds: keeps the fast subset under 5 min
def test_backbone_runs_once_per_cached_view(textures, monkeypatch):
    # 80 images, val_size 0.2 → 64 train / 16 val; 4 epochs, augmentation on, 2 cached views.
    head_only = dict(schedule=FeatureExtraction(epochs=4), epochs=None)
    assert stem_images(monkeypatch, textures, cache_views=2, **head_only) == \
        2 * 64 + 16 + 2 * FOLD_CHECK + TRUST_PASS  # builds: training (2 views), validation
    assert stem_images(monkeypatch, textures, cache_features=False, **head_only) == \
        4 * (64 + 16) + TRUST_PASS


@pytest.mark.slow  # several Lite0 passes (~7 s): the fast subset stays under 5 min
def test_top_groups_phase_never_reruns_the_frozen_stem(textures, monkeypatch):
    # Without augmentation one view per phase: each phase runs the stem once over train + val.
    two_phases = dict(schedule=[Phase(1, 0), Phase(3, 2)], epochs=None, augment=None)
    # The one-epoch phase reads its cache once, so the plan sizes the cache first (one blank
    # image through the stages: cache_features="auto" skips a cache that would spill to disk).
    assert stem_images(monkeypatch, textures, **two_phases) == \
        2 * 80 + 4 * FOLD_CHECK + TRUST_PASS + 1
    assert stem_images(monkeypatch, textures, cache_features=False, **two_phases) == 4 * 80 + TRUST_PASS


def test_cache_over_its_ram_budget_goes_to_disk_with_the_same_results(textures, tmp_path):
    settings = dict(schedule=[Phase(2, 0), Phase(2, 1)], epochs=None, augment=None)
    in_ram = fit(textures, **settings)
    on_disk = fit(textures, cache_memory=1000, cache_dir=str(tmp_path), **settings)
    assert [r["cache"] for r in in_ram.history_] == ["ram"] * 4
    assert [r["cache"] for r in on_disk.history_] == ["disk"] * 4
    assert_same_weights(on_disk, in_ram, atol=0)
    assert list(tmp_path.iterdir()) == []  # anonymous files: nothing left behind


def test_disk_rows_round_trip_in_any_order():
    from easytl.training.feeds import DiskRows
    rows = DiskRows((3, 2, 2), torch.bfloat16)
    data = torch.randn(10, 3, 2, 2).to(torch.bfloat16)
    rows.append(data[:4])
    rows.append(data[4:])
    index = torch.tensor([9, 0, 4, 4, 7])
    assert len(rows) == 10 and torch.equal(rows[index], data[index])


def test_cache_that_cannot_be_written_falls_back_to_recomputing(textures, monkeypatch):
    def disk_full(self, chunk):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("easytl.training.feeds.DiskRows.append", disk_full)
    settings = dict(schedule=FeatureExtraction(epochs=2), epochs=None, augment=None)
    with pytest.warns(UserWarning, match="No space left"):
        spilled = fit(textures, cache_memory=1, **settings)
    plain = fit(textures, cache_features=False, **settings)
    assert [r["cache"] for r in spilled.history_] == [None, None]
    assert_same_weights(spilled, plain, atol=0)


def test_cache_parameters_are_validated(textures):
    with pytest.raises(ValueError, match="cache_features"):
        fit(textures, cache_features="always")
    with pytest.raises(ValueError, match="cache_views"):
        fit(textures, cache_views=0)
    with pytest.raises(ValueError, match="cache_memory must be .* '2GB'"):
        fit(textures, cache_memory="lots")
