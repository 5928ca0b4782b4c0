import numpy as np
import torch
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from easytl import FeatureExtractor, create_backbone


def test_features_equal_the_frozen_backbone_output(textures):
    X, _ = textures
    extractor = FeatureExtractor(image_size=64, mixed_precision="no").fit()
    features = extractor.transform(X[:6])
    backbone = create_backbone("efficientnet_lite0").eval()
    x = torch.nn.functional.interpolate(torch.from_numpy(np.rint(X[:6] * 255) / 255).permute(0, 3, 1, 2),
                                        size=64, mode="bilinear", antialias=True)
    with torch.no_grad():
        expected = backbone((x - 0.5) / 0.5).numpy()
    assert features.shape == (6, 1280) == (6, extractor.n_features_)
    np.testing.assert_allclose(features, expected, atol=1e-4)


def test_linear_probe_pipeline_cross_validates(textures):
    X, y = textures
    pipe = make_pipeline(FeatureExtractor(image_size=64), StandardScaler(),
                         LogisticRegression(max_iter=1000))
    scores = cross_val_score(pipe, X, y, cv=2)
    assert scores.mean() >= 0.9  # pretrained features separate the textures
    assert clone(pipe).get_params()["featureextractor__image_size"] == 64
