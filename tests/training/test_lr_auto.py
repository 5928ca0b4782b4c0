"""lr="auto" sweeps the phase the fit will train, on its training images."""

import numpy as np

from easytl import TransferClassifier
from easytl.training import adaptive

from conftest import tiny_kwargs


def test_lr_auto_sweeps_the_deeper_phase_when_the_probe_is_weak(textures, monkeypatch):
    monkeypatch.setattr(adaptive, "WEAK_PROBE_BELOW", 1.01)  # every probe is weak: the fit goes deep
    X, y = textures
    y = y.copy()
    y[::3] = np.roll(y[::3], 7)  # noisy labels: the probe cannot be perfect (that would stop the fit)
    clf = TransferClassifier(**tiny_kwargs(schedule="auto", epochs=None, val_size=0.25,
                                           augment="light", lr="auto"))
    clf.fit(X, y)
    assert clf.plan_["if_probe_weak"]["applied"]
    assert [p["name"] for p in clf.plan_["phases"]] == ["probe", "deep"]
    assert clf.lr_find_.phase == "deep"       # the sweep ran the phase the fit trained
    assert np.isfinite(clf.lr_)
