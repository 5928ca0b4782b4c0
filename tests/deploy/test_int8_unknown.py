"""The int8 export calls as many held-out images unknown as the fp32 classifier does.

Its unknown threshold is the fp32 threshold carried to the int8 graph's own novelty scores
(the rank it takes among the fp32 scores of the calibration images); it used to be ranked
among scores of novelty models refitted on the calibration images, another scale. Checked
on two data sets: scikit-learn digits (upscaled to 32 px RGB) and the synthetic textures.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from easytl import Predictor, TransferClassifier, make_textures
from easytl.deploy.export import export_model

from conftest import tiny_kwargs

pytest.importorskip("onnxruntime", reason="onnxruntime is the onnx extra")


def digits_rgb(size: int = 32):
    from sklearn.datasets import load_digits
    data = load_digits()
    x = torch.from_numpy(data.images / 16.0).float()[:, None]
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)
    return uint8(x.repeat(1, 3, 1, 1).permute(0, 2, 3, 1).numpy()), data.target


def uint8(X):
    return np.round(np.asarray(X) * 255).astype(np.uint8)


def data_set(name: str):
    """(training images, labels, held-out images) at 32 px."""
    if name == "digits":
        X, y = digits_rgb()
        order = np.random.default_rng(0).permutation(len(X))
        return X[order[:400]], y[order[:400]], X[order[400:1200]]
    X, y = make_textures(100, size=32, random_state=0)
    return uint8(X), y, uint8(make_textures(200, size=32, random_state=1)[0])


def unknown_rate(labels) -> float:
    return float(np.mean(np.asarray(labels, dtype=object) == "unknown"))


@pytest.mark.slow  # two fits and two int8 exports of a tiny CNN (~15 s)
@pytest.mark.parametrize("name", ["digits", "textures"])
def test_int8_held_out_unknown_rate_matches_fp32(name, tmp_path):
    X, y, held_out = data_set(name)
    clf = TransferClassifier(**tiny_kwargs(epochs=3)).fit(X, y)
    # calibrated on training images, as README and the CLI advise
    int8 = Predictor(export_model(clf, tmp_path / "int8.onnx", quantize="int8", calibration=X[:300]))
    fp32_rate = unknown_rate(clf.predict(held_out, reject_unknown=True))
    int8_rate = unknown_rate(int8.predict(held_out, reject_unknown=True))
    # The same images through both: what differs is int8's rounding and its threshold. With
    # n = 800 held-out images a rate near 5% has a binomial standard error of 0.8 points; the
    # two rates share their images, so 2.5 points (about 3 standard errors of one rate) is a
    # difference a consistent threshold does not reach by chance.
    assert abs(int8_rate - fp32_rate) <= 0.025, (name, int8_rate, fp32_rate)
    assert 0.0 < fp32_rate < 0.2, fp32_rate  # the threshold rejects some, not most
