"""Notebook §3 + exercises 2 and 3: new head, then unfreeze everything with a lower backbone LR,
3 epochs of LR warmup and gradient clipping.

Run: python examples/fine_tuning.py [--epochs 3] [--image-size N]
"""

import argparse

from sklearn.model_selection import train_test_split

from easytl import Phase, TransferClassifier, make_textures


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=3, help="epochs per phase")
    parser.add_argument("--n-per-class", type=int, default=100)
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--verbose", type=int, default=1)
    args = parser.parse_args(argv)
    X, y = make_textures(n_per_class=args.n_per_class)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, stratify=y,
                                                        random_state=0)
    clf = TransferClassifier(
        schedule=[Phase(args.epochs, 0, name="head"),                  # new head, frozen backbone
                  Phase(args.epochs, "all", warmup_epochs=min(3, args.epochs), name="all")],
        lr=1e-3, backbone_lr_mult=0.1,   # backbone at 1e-4 while the head trains at 1e-3
        grad_clip=1.0, image_size=args.image_size, random_state=0, verbose=args.verbose)
    clf.fit(X_train, y_train)
    result = clf.report(X_test, y_test)
    print(result["report"])
    return result["accuracy"]


if __name__ == "__main__":
    main()
