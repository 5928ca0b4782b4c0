"""The notebook's three-phase recipe: head → top layer groups → everything; saves the history plot.

Run: python examples/progressive_unfreezing.py [--out history.png] [--epochs N] [--image-size N]
"""

import argparse

from sklearn.model_selection import train_test_split

from easytl import ProgressiveUnfreezing, TransferClassifier, make_textures, plot_history


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="history.png")
    parser.add_argument("--epochs", type=int, default=None, help="total (default: 4+4+2)")
    parser.add_argument("--n-per-class", type=int, default=100)
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--verbose", type=int, default=1)
    args = parser.parse_args(argv)
    X, y = make_textures(n_per_class=args.n_per_class)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, stratify=y,
                                                        random_state=0)
    clf = TransferClassifier(schedule=ProgressiveUnfreezing(top_groups=3), epochs=args.epochs,
                             image_size=args.image_size, random_state=0, verbose=args.verbose)
    clf.fit(X_train, y_train)
    plot_history(clf, path=args.out)
    accuracy = clf.score(X_test, y_test)
    print(f"held-out accuracy {accuracy:.3f}; best epoch {clf.best_epoch_}; history plot: {args.out}")
    return accuracy


if __name__ == "__main__":
    main()
