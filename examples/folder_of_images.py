"""A directory of image files, one sub-folder per class (written here from scikit-learn digits).

Run: python examples/folder_of_images.py [--root DIR] [--image-size N] [--epochs N]

With no options the classifier uses its adaptive defaults (input size and
training length chosen from the images).
"""

import argparse
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

from easytl import TransferClassifier


def write_digit_folders(root: Path, per_class: int) -> tuple[Path, Path]:
    """train/<digit>/*.png and test/<digit>/*.png, 32x32 gray PNGs."""
    digits = load_digits()
    for label in range(10):
        indices = np.flatnonzero(digits.target == label)[:per_class]
        for k, index in enumerate(indices):
            split = "test" if k % 4 == 0 else "train"
            folder = root / split / f"digit_{label}"
            folder.mkdir(parents=True, exist_ok=True)
            pixels = (digits.images[index] * (255 / 16)).astype(np.uint8)
            Image.fromarray(pixels).resize((32, 32), Image.NEAREST).save(folder / f"{k}.png")
    return root / "train", root / "test"


def size_argument(text: str):
    return text if text == "auto" else int(text)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", default=None, help="where to write the images (default: a temp dir)")
    parser.add_argument("--per-class", type=int, default=60)
    parser.add_argument("--epochs", type=int, default=None, help="default: chosen from the data")
    parser.add_argument("--image-size", type=size_argument, default="auto")
    parser.add_argument("--verbose", type=int, default=1)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        train_dir, test_dir = write_digit_folders(Path(args.root or tmp), args.per_class)
        clf = TransferClassifier(epochs=args.epochs, image_size=args.image_size, random_state=0,
                                 verbose=args.verbose).fit(str(train_dir))
        result = clf.report(str(test_dir))
    print(result["report"])
    return result["accuracy"]


if __name__ == "__main__":
    main()
