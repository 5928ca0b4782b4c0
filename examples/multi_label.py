"""Multi-label images with their labels in a CSV file: 2x2 texture mosaics.

Each image shows one to three of the four synthetic textures; its labels are
the textures it contains. The images are written as PNG files next to a
``labels.csv`` (``path,labels`` with labels separated by spaces), the way real
labelled sets often come, and the classifier reads the table directly.

Run: python examples/multi_label.py [--n-images N] [--root DIR] [--image-size N] [--epochs N]
"""

import argparse
import csv
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from easytl import TransferClassifier, make_texture_mosaics


def write_table(root: Path, X: np.ndarray, y: list, name: str) -> Path:
    """PNG files under root/images and root/<name>.csv with a path and a labels column."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    table = root / f"{name}.csv"
    with open(table, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "labels"])
        for i, (image, labels) in enumerate(zip(X, y)):
            path = f"images/{name}_{i:04d}.png"
            Image.fromarray((image * 255).round().astype(np.uint8)).save(root / path)
            writer.writerow([path, " ".join(labels)])
    return table


def size_argument(text: str):
    return text if text == "auto" else int(text)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-images", type=int, default=400, help="3/4 train, 1/4 test")
    parser.add_argument("--root", default=None, help="where to write the images (default: a temp dir)")
    parser.add_argument("--epochs", type=int, default=None, help="default: chosen from the data")
    parser.add_argument("--image-size", type=size_argument, default="auto")
    parser.add_argument("--verbose", type=int, default=1)
    args = parser.parse_args(argv)
    X, y = make_texture_mosaics(args.n_images, random_state=0)
    n_train = args.n_images * 3 // 4
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.root or tmp)
        train_csv = write_table(root, X[:n_train], y[:n_train], "train")
        test_csv = write_table(root, X[n_train:], y[n_train:], "test")
        clf = TransferClassifier(epochs=args.epochs, image_size=args.image_size, random_state=0,
                                 verbose=args.verbose)
        start = time.perf_counter()
        clf.fit(str(train_csv), root=root, label_delim=" ")   # multi-label, detected from the cells
        seconds = time.perf_counter() - start
        result = clf.report(str(test_csv))   # read like the training table: same delimiter
        predicted = clf.predict(str(test_csv))[:3]
    print(f"fitted on {n_train} images in {seconds:.1f} s ({clf.image_size_} px); classes "
          f"{clf.classes_.tolist()}, thresholds {np.round(clf.thresholds_, 2).tolist()}")
    print(f"sample F1 {result['f1_samples']:.3f}, micro F1 {result['f1_micro']:.3f}, "
          f"macro F1 {result['f1_macro']:.3f}, mean average precision "
          f"{result['mean_average_precision']:.3f}")
    for truth, labels in zip(y[n_train:], predicted):
        print(f"true {truth} predicted {labels}")
    return result["f1_samples"]


if __name__ == "__main__":
    main()
