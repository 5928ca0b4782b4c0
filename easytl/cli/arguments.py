"""Argument types and option groups that several ``easytl`` commands share (no heavy imports:
parsing stays fast)."""

from __future__ import annotations

import argparse


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text}")
    return value


def _size(text: str):
    return "auto" if text == "auto" else _positive_int(text)


def _workers(text: str):
    if text == "auto":
        return "auto"
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 'auto' or a count >= 0, got {text}")
    return value


def _val_size(text: str):
    if text == "auto":
        return "auto"
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 'auto', a fraction or a count >= 0, got {text}")
    return int(value) if value >= 1 and value == int(value) else value


def _lr(text: str):
    return "auto" if text == "auto" else _positive_float(text)


def _recipe_arguments(parser) -> None:
    """The small-data training recipes (TransferClassifier's parameters of the same names)."""
    parser.add_argument("--augment", default="default", type=lambda name: name.replace("-", "_"),
                        choices=["default", "light", "strong", "flips", "turns", "no_mirror",
                                 "none"],
                        help="training augmentation (default: light, plus vertical flips and "
                             "90-degree turns when a test after the probe shows the images have "
                             "those symmetries, or without mirror images when it shows they change "
                             "the class; strong: TrivialAugmentWide + random erasing; "
                             "flips: light + vertical flips; turns: light + random 90-degree turns "
                             "and mirror images, for images whose class does not depend on "
                             "orientation; no_mirror: light without its horizontal flip, for "
                             "digits, letters and other handed classes)")
    parser.add_argument("--mixup", type=_positive_float, default=None, metavar="ALPHA",
                        help="MixUp with lambda ~ Beta(ALPHA, ALPHA), e.g. 0.2")
    parser.add_argument("--cutmix", type=_positive_float, default=None, metavar="ALPHA",
                        help="CutMix with lambda ~ Beta(ALPHA, ALPHA), e.g. 1.0")
    parser.add_argument("--label-smoothing", type=float, default=0.0, metavar="EPS")
    parser.add_argument("--ema", type=float, default=None, metavar="DECAY",
                        help="keep an exponential moving average of the weights, e.g. 0.999")
    parser.add_argument("--accumulate", type=_positive_int, default=1, metavar="K",
                        help="gradient accumulation: one optimizer step per K batches")


def _table_arguments(parser) -> None:
    """Labels from a CSV instead of class sub-folders (paths relative to DATA_DIR)."""
    parser.add_argument("--labels", metavar="CSV",
                        help="a table of image paths (relative to DATA_DIR) and labels, instead "
                             "of one sub-folder per class")
    parser.add_argument("--path-column", default=None, help="default: path, file, filename, image, ...")
    parser.add_argument("--label-column", default=None, help="default: label, labels, class, ...")
    parser.add_argument("--label-delim", default=None,
                        help="split label cells on this (several labels per image: multi-label)")
