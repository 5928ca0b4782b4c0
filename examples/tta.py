"""Exercise 4: test-time augmentation (5 views averaged) against plain prediction.

Run: python examples/tta.py [--image-size N] [--epochs N]
"""

import argparse

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from easytl import TransferClassifier


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--limit", type=int, default=600)
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--verbose", type=int, default=1)
    args = parser.parse_args(argv)
    digits = load_digits()
    X, y = (digits.images / 16.0).astype(np.float32)[:args.limit], digits.target[:args.limit]
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, stratify=y,
                                                        random_state=0)
    clf = TransferClassifier(epochs=args.epochs, image_size=args.image_size, random_state=0,
                             verbose=args.verbose).fit(X_train, y_train)
    plain = float(np.mean(clf.predict(X_test) == y_test))
    tta = float(np.mean(clf.predict_tta(X_test, n_augment=5) == y_test))
    print(f"plain accuracy {plain:.3f}; TTA (5 views) accuracy {tta:.3f}")
    return plain, tta


if __name__ == "__main__":
    main()
