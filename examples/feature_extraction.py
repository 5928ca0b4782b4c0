"""Notebook §2: a frozen pretrained backbone + logistic regression (a linear probe).

Run: python examples/feature_extraction.py [--n-per-class 100] [--image-size N]
"""

import argparse

from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from easytl import FeatureExtractor, make_textures


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-per-class", type=int, default=100)
    parser.add_argument("--image-size", type=int, default=None)
    args = parser.parse_args(argv)
    X, y = make_textures(n_per_class=args.n_per_class)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, stratify=y,
                                                        random_state=0)
    probe = make_pipeline(FeatureExtractor("efficientnet_lite0", image_size=args.image_size),
                          StandardScaler(), LogisticRegression(max_iter=1000))
    probe.fit(X_train, y_train)
    accuracy = probe.score(X_test, y_test)
    print(f"linear probe on frozen EfficientNet-Lite0 features: held-out accuracy {accuracy:.3f}")
    return accuracy


if __name__ == "__main__":
    main()
