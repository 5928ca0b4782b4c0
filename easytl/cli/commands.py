"""What the ``easytl`` commands share: errors, messages, loading a model, reading images.

Each command lives in its own module (``fit_cmd``, ``predict_cmd``, ...): it
adds its arguments to the parser and runs. Every command returns its exit
code, writes results through ``args.emit`` (stdout) and everything else to
stderr; heavy modules are imported inside the commands, so parsing stays fast.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path


class CommandError(Exception):
    """A failure the command has already explained; main prints it and exits with 1."""


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _announce(args, doing: str) -> None:
    """A command's first line, on stderr before it imports torch (3-4 s): the user sees at once
    what it is doing. Every command but ``backbones`` (which needs no torch) starts with it;
    ``--verbose 0`` silences it, as it does progress."""
    if getattr(args, "verbose", 1):
        _say(f"easytl {args.command}: {doing} ...")


def _classifier():
    from ..classifier import TransferClassifier
    return TransferClassifier


def _load(path):
    return _classifier().load(path)


def _collect_images(paths, size: int):
    """Files and folders (recursed) → (readable image files, [(path, reason), ...] for the rest,
    the readable files as a source decoded once at the model input ``size``, so that
    predicting, scoring novelty and test-time views decode nothing again)."""
    from ..data.sources import list_image_files

    files, bad = [], []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = list_image_files(path)
            if not found:
                bad.append((path, "folder holds no image files"))
            files += found
        elif path.exists():
            files.append(path)  # decoded below: an image without the usual extension still counts
        else:
            bad.append((path, "no such file or folder"))
    from ..constants import DEFAULT_CACHE_MEMORY, parse_bytes
    from ..data.decoded import read_files_once
    source, unreadable = read_files_once(files, size, parse_bytes(DEFAULT_CACHE_MEMORY, "memory"),
                                         verbose=1)
    if unreadable:
        broken = {p for p, _ in unreadable}
        files = [f for f in files if f not in broken]
        bad += unreadable
    return files, bad, source


def _report_bad(bad) -> None:
    for path, reason in bad:
        _say(f"easytl: cannot read {path}: {reason}")


def _training_data(args):
    """Image paths and labels of DATA_DIR: its class sub-folders, or the --labels table."""
    from ..data.sources import read_class_folders
    if args.labels:  # a table of paths (relative to DATA_DIR) and labels
        from ..data.tables import read_table
        try:
            paths, labels, _ = read_table(args.labels, args.label_column, args.data_dir,
                                          args.path_column, args.label_delim,
                                          "skip" if getattr(args, "skip_bad_images", False) else "error")
        except ValueError as exc:  # the library's hint, as the shell spells it
            hint = (", or pass --skip-bad-images to leave them out" if hasattr(args, "skip_bad_images")
                    else "")
            raise CommandError(str(exc).replace(", or pass on_bad_image='skip' to leave them out",
                                                hint)) from None
        if labels is None:
            raise CommandError(f"{args.labels} has no label column: name it with --label-column.")
    else:
        paths, labels = read_class_folders(args.data_dir)
        if labels is None:
            raise CommandError(f"{args.data_dir} has no class sub-folders: lay it out as "
                               "DATA_DIR/<class name>/<images>, or give --labels labels.csv.")
    if not getattr(args, "label_delim", None):  # a multi-label model may learn a single label
        _check_two_classes(labels, args.labels or args.data_dir, folder=not args.labels)
    return paths, labels


def _check_two_classes(labels, where, folder: bool) -> None:
    """A classifier needs two classes: name the folder (or table) and its one class, not ``y``."""
    import numpy as np
    classes = np.unique(np.asarray(labels).astype(str))
    if len(classes) == 1:
        what = "class sub-folder" if folder else "label"
        fix = ("DATA_DIR/<class name>/<images>, one sub-folder per class" if folder
               else "one row per image, with at least two distinct labels")
        raise CommandError(f"{where} holds a single {what}, '{classes[0]}'; a classifier needs at "
                           f"least 2 classes: {fix}.")


def _recipes(args) -> dict:
    """The training-recipe options as TransferClassifier parameters."""
    return dict(augment=None if args.augment == "none" else args.augment, mixup=args.mixup,
                cutmix=args.cutmix, label_smoothing=args.label_smoothing, ema=args.ema,
                accumulate=args.accumulate)


@contextlib.contextmanager
def _weights_hint():
    """Pretrained weights that cannot be downloaded: say how to pass a local file from the shell."""
    from ..models.backbones import WeightsUnavailableError
    try:
        yield
    except WeightsUnavailableError as exc:
        reason = str(exc).split(" Alternatives:")[0]
        raise CommandError(f"{reason} Pass a local state-dict file with --weights PATH, use "
                           "--backbone efficientnet_lite0 (weights ship with easytl), or "
                           "--no-pretrained.") from None


def _count(n: int, noun: str) -> str:
    """'1 image', '2 images', '2 classes'."""
    return f"{n} {noun}{'' if n == 1 else 'es' if noun.endswith('s') else 's'}"


def _plain(value):
    """A numpy scalar label as a plain Python value (for JSON and printing)."""
    return value.item() if hasattr(value, "item") else value
