"""Turned and mirrored training copies: the symmetries, the test that decides, the fit that uses it."""

import numpy as np
import pytest
import torch

from easytl import TransferClassifier
from easytl.data.augment import square_symmetries
from easytl.training.callbacks.base import Callback
from easytl.training.symmetry import sample_positions, symmetry_test

from conftest import tiny_kwargs


def _d4(image: torch.Tensor) -> list[torch.Tensor]:
    turns = [torch.rot90(image, k, dims=(-2, -1)) for k in range(4)]
    return turns + [t.flip(-1) for t in turns]


def test_square_symmetries_draw_each_of_the_eight_per_image():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)[:1].repeat(400, 1, 1, 1)
    out = square_symmetries(x, torch.Generator().manual_seed(0))
    candidates = _d4(x[0])
    which = [next(k for k, c in enumerate(candidates) if torch.equal(o, c)) for o in out]
    assert sorted(set(which)) == list(range(8))  # every image is one of them, and all occur
    assert torch.equal(square_symmetries(x, torch.Generator().manual_seed(0)), out)  # seeded


def _patterns(kind: str, n: int, rng):
    """8 px images, their pixels the features: 'oriented' classes are a bar at the top vs at
    the left (a turn makes one the other); 'level' classes are noise around a darker vs a
    brighter level (no turn changes which)."""
    images, labels = [], []
    for i in range(n):
        label = i % 2
        image = rng.normal(0, 1, (8, 8))
        if kind == "oriented":
            image[:2, :] += 1.5 if label == 0 else 0
            image[:, :2] += 1.5 if label == 1 else 0
        else:
            image += 0.15 * label
        images.append(image)
        labels.append(label)
    return torch.tensor(np.array(images), dtype=torch.float32)[:, None], np.array(labels)


@pytest.mark.parametrize("kind, keeps", [("oriented", False), ("level", True)])
def test_the_symmetry_test_tells_oriented_classes_from_invariant_ones(kind, keeps):
    rng = np.random.default_rng(0)
    train, y = _patterns(kind, 200, rng)
    val, y_val = _patterns(kind, 200, rng)
    turned = square_symmetries(train, torch.Generator().manual_seed(1))
    result = symmetry_test(train.flatten(1).numpy(), y, turned.flatten(1).numpy(), y,
                           val.flatten(1).numpy(), y_val)
    assert result.keeps_labels is keeps
    assert result.describe()["turns"] is keeps


def test_sample_positions_caps_the_images_turned():
    assert list(sample_positions(5, 0)) == [0, 1, 2, 3, 4]
    picked = sample_positions(100, 0, limit=10)
    assert len(picked) == 10 and list(picked) == sorted(set(picked))


class TurnsSeen(Callback):
    def __init__(self):
        self.by_phase = {}

    def on_phase_begin(self, phase, logs=None):
        self.by_phase[phase.name] = self.trainer.preprocess.turns


@pytest.mark.slow
def test_the_default_plan_adds_turns_only_where_they_keep_the_labels(monkeypatch):
    """The decision reaches the fine-tuning augmentation, and is recorded; user augmentation is
    left as given (no test)."""
    from easytl.training import symmetry
    outcome = {}
    real = symmetry.symmetry_test

    def forced(*args, **kwargs):
        result = real(*args, **kwargs)
        return symmetry.SymmetryTest(result.plain_loss, result.plain_loss + outcome["delta"])
    monkeypatch.setattr(symmetry, "symmetry_test", forced)
    rng = np.random.default_rng(0)
    X, y = rng.integers(0, 256, (80, 32, 32, 3), dtype=np.uint8), np.repeat(["a", "b"], 40)
    kwargs = tiny_kwargs(schedule="auto", epochs=None, head="auto", val_size="auto")
    monkeypatch.setattr("easytl.training.adaptive.FINE_TUNE_EPOCHS", 1)
    monkeypatch.setattr("easytl.training.adaptive.MIN_FINE_TUNE_STEPS", 1)
    for delta, expected in ((-0.1, True), (0.1, False)):
        outcome["delta"] = delta
        seen = TurnsSeen()
        clf = TransferClassifier(**kwargs, callbacks=[seen]).fit(X, y)
        probe_row = clf.history_[0]
        assert probe_row["symmetry"]["turns"] is expected
        assert seen.by_phase == {"probe": False, "all": expected}
        assert ("turned and mirrored copies" in probe_row["note"]) is expected
    seen = TurnsSeen()
    clf = TransferClassifier(**dict(kwargs, augment="strong"), callbacks=[seen]).fit(X, y)
    assert "symmetry" not in clf.history_[0] and seen.by_phase["all"] is False
