"""Data and command-line handling shared by both sides of the benchmark."""

from __future__ import annotations

import argparse

import numpy as np
from sklearn.model_selection import train_test_split

PREDICT_IMAGES = 2000


def run_workflow(workflows: dict, argv=None) -> None:
    """Parse ``WORKFLOW DATA [--epochs N]``, run it on its data and print one JSON line."""
    import json
    args = parse_args(argv, workflows)
    X_train, y_train, X_test, y_test, classes = load_data(args.data, args.workflow, args.seed)
    print(json.dumps(timed(workflows[args.workflow], X_train, y_train, X_test, y_test, classes,
                           args.epochs)))


def parse_args(argv, workflows):
    parser = argparse.ArgumentParser()
    parser.add_argument("workflow", choices=sorted(workflows))
    parser.add_argument("data", choices=DATA)
    parser.add_argument("--epochs", type=int, default=2, help="epochs per phase")
    parser.add_argument("--seed", type=int, default=0, help="which k-shot draw (digits5/10/20)")
    return parser.parse_args(argv)


# textures and digits: stratified 75/25 splits; digitsK: K training images per class (drawn
# with --seed), every other digit is the test set.
DATA = ["textures", "digits", "digits5", "digits10", "digits20", "proxy"]


def load_data(name: str, workflow: str, seed: int = 0):
    """(X_train, y_train, X_test, y_test, classes) as float images in [0, 1] and int labels."""
    from easytl import make_textures
    if workflow == "predict":  # 2,000 images to predict; training data unused
        X, y = make_textures(n_per_class=PREDICT_IMAGES // 4, random_state=1)
        y = np.unique(y, return_inverse=True)[1]
        return X[::250], y[::250], X, y, np.unique(y)  # 8 training images, 2 per class
    if name == "proxy":  # the inspection proxy: 800 / 400 gray 288 px images, split by photo
        from easytl import make_inspection_images
        X, y, _ = make_inspection_images(800, 288, split="train", random_state=0)
        X_test, y_test, _ = make_inspection_images(400, 288, split="test", random_state=1000)
        classes, y = np.unique(y, return_inverse=True)
        y_test = np.searchsorted(classes, y_test)

        def rgb(images):
            return np.repeat(images[..., None], 3, axis=-1).astype(np.float32) / 255.0
        return rgb(X), y, rgb(X_test), y_test, np.arange(len(classes))
    if name == "textures":
        X, y = make_textures(random_state=42)
        y = np.unique(y, return_inverse=True)[1]
    else:
        from sklearn.datasets import load_digits
        digits = load_digits()
        X, y = (digits.images / 16.0).astype(np.float32), digits.target
        X = np.repeat(X[..., None], 3, axis=-1)
        if name != "digits":  # k-shot: k training images per class, the rest is the test set
            k = int(name[len("digits"):])
            rng = np.random.default_rng(seed)
            train = np.concatenate([rng.choice(np.flatnonzero(y == c), k, replace=False)
                                    for c in np.unique(y)])
            test = np.setdiff1d(np.arange(len(y)), train)
            return X[train], y[train], X[test], y[test], np.unique(y)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, stratify=y,
                                                        random_state=0)
    return X_train, y_train, X_test, y_test, np.unique(y)


def timed(workflow, *args) -> dict:
    """Run a workflow; it returns an accuracy, or (accuracy, seconds) when it times itself."""
    import time
    start = time.perf_counter()
    result = workflow(*args)
    seconds = time.perf_counter() - start
    if isinstance(result, tuple):
        result, seconds = result
    return {"seconds": seconds, "accuracy": result}
