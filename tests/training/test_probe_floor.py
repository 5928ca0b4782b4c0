"""The kept model is never worse than the linear probe on the held-out images, by accuracy."""

import torch

from easytl.training.best_epoch import BestEpoch
from easytl.training.metrics import resolve_monitor


def _fit(rows):
    """Epoch rows (val_loss, val_accuracy), the first the probe's; weights tagged by epoch."""
    model = torch.nn.Linear(1, 1, bias=False)
    best, history = BestEpoch(resolve_monitor("val_loss")), []
    for epoch, (loss, accuracy) in enumerate(rows, start=1):
        with torch.no_grad():
            model.weight.fill_(epoch)
        row = {"val_loss": loss, "val_accuracy": accuracy}
        best.update(epoch, row, model, probe=epoch == 1)
        history.append(row)
    note = best.keep_probe_if_better(history)
    best.restore(model)
    return best.epoch, float(model.weight), note


def test_a_fine_tuned_epoch_with_lower_loss_but_lower_accuracy_gives_way_to_the_probe():
    epoch, weight, note = _fit([(0.9, 0.75), (0.7, 0.625), (0.8, 0.70)])
    assert (epoch, weight) == (1, 1.0)
    assert "0.625" in note and "0.750" in note and "probe's weights are kept" in note


def test_a_fine_tuned_epoch_as_accurate_as_the_probe_is_kept():
    assert _fit([(0.9, 0.75), (0.7, 0.75), (0.8, 0.9)])[:2] == (2, 2.0)
    assert _fit([(0.9, 0.75), (0.95, 0.6), (0.5, 0.8)])[:2] == (3, 3.0)
    assert _fit([(0.5, 0.75), (0.7, 0.5)])[:2] == (1, 1.0)   # the probe was best already


def test_the_probe_floor_survives_a_checkpoint():
    best = BestEpoch(resolve_monitor("val_loss"))
    model = torch.nn.Linear(1, 1, bias=False)
    best.update(1, {"val_loss": 0.9, "val_accuracy": 0.75}, model, probe=True)
    again = BestEpoch(resolve_monitor("val_loss"))
    again.load_state_dict(best.state_dict())
    assert again.probe["accuracy"] == 0.75 and again.probe["epoch"] == 1


def test_a_few_shot_fit_whose_probe_is_perfect_in_cross_fitting_stops_at_the_probe():
    from easytl import TransferClassifier, make_textures
    X, y = make_textures(n_per_class=5, size=32, random_state=0)
    clf = TransferClassifier(image_size=32, random_state=0, verbose=0, mixed_precision="no")
    clf.fit(X, y)
    assert clf.plan_["n_val"] == 0 and [p.name for p in clf.phases_] == ["probe"]
    assert [d["decision"] for d in clf.plan_["decisions"]] == ["stop_at_perfect_probe"]
    assert "cross-fitting" in clf.history_[0]["note"]
    X_test, y_test = make_textures(n_per_class=10, size=32, random_state=1)
    assert clf.score(X_test, y_test) == 1.0


def test_a_monitor_the_user_chose_picks_the_epoch_itself():
    model = torch.nn.Linear(1, 1, bias=False)
    best, history = BestEpoch(resolve_monitor("val_balanced_accuracy")), []
    for epoch, (accuracy, balanced) in enumerate([(0.91, 0.70), (0.90, 0.80)], start=1):
        row = {"val_loss": 1.0, "val_accuracy": accuracy, "val_balanced_accuracy": balanced}
        best.update(epoch, row, model, probe=epoch == 1)
        history.append(row)
    assert best.keep_probe_if_better(history) is None and best.epoch == 2


def test_the_cross_fitted_images_are_a_sample_even_beside_a_class_of_one(monkeypatch):
    import numpy as np
    from types import SimpleNamespace
    from easytl.training import evaluation
    monkeypatch.setattr(evaluation, "CROSS_FIT_MAX_IMAGES", 10)
    targets = np.array([0] * 12 + [1] * 12 + [2])  # class 2: one image (a typo class, say)

    class Source:
        def subset(self, rows):
            return rows
    feed = SimpleNamespace(targets=targets, source=Source(), preprocess=None, batch_size=4,
                           device=torch.device("cpu"), num_workers=0)
    trainer = evaluation.Evaluation()
    trainer.image_feeds, trainer.labeled, trainer._cross_fit = (feed, None), None, None
    monkeypatch.setattr(evaluation.Evaluation, "_pooled_features",
                        lambda self, feed, transform=None: (np.zeros((len(feed.targets), 2)),
                                                            feed.targets))
    sampled, _, labels = trainer._cross_fit_images(seed=0)
    assert len(labels) == 10 and len(set(sampled.source)) == 10
