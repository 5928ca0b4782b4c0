"""scikit-learn's 8x8 digits with the default TransferClassifier (75/25 stratified split).

Run: python examples/digits.py [--image-size N] [--epochs N]
"""

import argparse
import time

import numpy as np
from sklearn.datasets import load_digits
from sklearn.metrics import classification_report
from sklearn.model_selection import train_test_split

from easytl import TransferClassifier


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--image-size", type=int, default=None, help="default: the backbone's (224)")
    parser.add_argument("--epochs", type=int, default=None, help="default: the schedule's")
    parser.add_argument("--limit", type=int, default=None, help="use only this many images")
    parser.add_argument("--verbose", type=int, default=1)
    args = parser.parse_args(argv)

    digits = load_digits()
    X = (digits.images / 16.0).astype(np.float32)  # 8x8 gray in [0, 1]
    y = digits.target
    if args.limit:
        X, y = X[:args.limit], y[:args.limit]
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, stratify=y,
                                                        random_state=0)
    clf = TransferClassifier(image_size=args.image_size, epochs=args.epochs, random_state=0,
                             verbose=args.verbose)
    start = time.perf_counter()
    clf.fit(X_train, y_train)
    seconds = time.perf_counter() - start
    predictions = clf.predict(X_test)
    print(classification_report(y_test, predictions, digits=3))
    accuracy = float(np.mean(predictions == y_test))
    print(f"digits: held-out accuracy {accuracy:.3f} on {len(y_test)} images; "
          f"fit on {len(y_train)} images took {seconds:.0f} s")
    return accuracy


if __name__ == "__main__":
    main()
