"""Calibration and unknown-image detection of the default TransferClassifier, measured.

    python benchmarks/trust.py

* ECE (15 bins) and log-loss on held-out images before and after temperature
  scaling: synthetic textures (300 / 100) and scikit-learn digits (1347 / 450).
* Unknown images: trained on 3 of the 4 textures (the 4th, "noise", never seen),
  and on digits 0-4 (5-9 never seen): AUROC of the novelty score between
  held-out known images and the unseen classes, and the share of held-out known
  images rejected at ``unknown_rate=0.05``.
* Drift: four classes cut from scikit-image photos, trained on crops of the top
  half of each photo and tested on crops of the bottom half (real data drifts
  like this), plus crops of five unrelated photos: held-out accuracy, ECE
  before and after calibration, the temperature, the share of known-class test
  images rejected at ``unknown_rate=0.05`` and of unrelated crops rejected.
  ``python benchmarks/trust.py drift [size] [n_train]`` runs only this one.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from easytl import TransferClassifier, make_textures
from easytl.trust.statistics import auroc


def data(name):
    if name == "textures":
        return make_textures(random_state=42)
    digits = load_digits()
    return (digits.images / 16.0).astype(np.float32), digits.target


def calibration(name):
    X, y = data(name)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, stratify=y,
                                                        random_state=0)
    start = time.perf_counter()
    clf = TransferClassifier(random_state=0, verbose=0).fit(X_train, y_train)
    result = clf.report(X_test, y_test)
    return {"data": name, "accuracy": result["accuracy"], "fit_s": round(time.perf_counter() - start, 1),
            **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in result["calibration"].items()}}


def unknown(name):
    X, y = data(name)
    known = y != "noise" if name == "textures" else y < 5
    X_train, X_test, y_train, y_test = train_test_split(X[known], y[known], test_size=0.25,
                                                        stratify=y[known], random_state=0)
    clf = TransferClassifier(random_state=0, verbose=0).fit(X_train, y_train)
    known_scores = clf.novelty_score(X_test)
    unseen_scores = clf.novelty_score(X[~known])
    return {"data": name, "auroc": round(auroc(known_scores, unseen_scores), 4),
            "false_reject": round(float((known_scores > clf.unknown_threshold_).mean()), 4),
            "unseen_rejected": round(float((unseen_scores > clf.unknown_threshold_).mean()), 4)}


def drift(size=64, n_train=60, n_test=40):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from conftest import drifted_photos  # the data of the drift test, at a larger size
    X_train, y_train, X_test, y_test, unrelated = drifted_photos(n_train, n_test, size)
    start = time.perf_counter()
    clf = TransferClassifier(random_state=0, verbose=0).fit(X_train, y_train)
    result = clf.report(X_test, y_test)
    calibration = result["calibration"]
    return {"data": f"drifted photos ({size} px, {len(X_train)} / {len(X_test)})",
            "fit_s": round(time.perf_counter() - start, 1), "accuracy": result["accuracy"],
            "temperature": round(float(clf.temperature_), 3),
            "ece_before": round(calibration["ece_before"], 4),
            "ece_after": round(calibration["ece_after"], 4),
            "threshold_images": clf.unknown_threshold_n_,
            "false_reject": round(float(np.mean(clf.predict(X_test, reject_unknown=True) == "unknown")), 4),
            "unrelated_rejected": round(float(np.mean(clf.predict(unrelated, reject_unknown=True)
                                                      == "unknown")), 4)}


if __name__ == "__main__":
    if sys.argv[1:2] == ["drift"]:
        print(json.dumps(drift(*map(int, sys.argv[2:]))), flush=True)
        sys.exit(0)
    print(json.dumps(drift()), flush=True)
    for name in ("textures", "digits"):
        print(json.dumps(calibration(name)), flush=True)
    for name in ("textures", "digits"):
        print(json.dumps(unknown(name)), flush=True)
