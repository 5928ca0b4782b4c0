"""Exercise 5: t-SNE of pooled features before and after fine-tuning, side by side.

Run: python examples/tsne.py [--out tsne.png] [--image-size N] [--epochs N]
"""

import argparse

import numpy as np
from sklearn.datasets import load_digits

from easytl import FeatureExtractor, TransferClassifier, plot_tsne


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="tsne.png")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--limit", type=int, default=500)
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--verbose", type=int, default=1)
    args = parser.parse_args(argv)
    digits = load_digits()
    X, y = (digits.images / 16.0).astype(np.float32)[:args.limit], digits.target[:args.limit]
    before = FeatureExtractor("efficientnet_lite0", image_size=args.image_size).fit()
    after = TransferClassifier(schedule="fine_tune", epochs=args.epochs, image_size=args.image_size,
                               random_state=0, verbose=args.verbose).fit(X, y)
    plot_tsne(X, y, [before, after], titles=["pretrained features", "after fine-tuning"],
              path=args.out)
    print(f"t-SNE plot: {args.out}")


if __name__ == "__main__":
    main()
