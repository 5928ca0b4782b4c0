"""``easytl lr-find DATA_DIR``: the learning-rate range test, as the first trained phase of
``easytl fit`` with the same options would run it.
"""

from __future__ import annotations

from ..constants import DEFAULT_BACKBONE, SCHEDULE_NAMES
from .arguments import _positive_float, _positive_int, _recipe_arguments, _size, _table_arguments
from .commands import _announce, _classifier, _recipes, _training_data, _weights_hint


def add_parser(command) -> None:
    """The ``lr-find`` sub-command (``command`` is build_parser's sub-command factory)."""
    lr_find = command("lr-find", run, "the learning-rate range test on a folder",
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


def run(args) -> int:
    _announce(args, f"reading the images in {args.data_dir}")
    paths, labels = _training_data(args)
    clf = _classifier()(backbone=args.backbone, schedule=args.schedule, image_size=args.image_size,
                        batch_size=args.batch_size, random_state=args.seed, verbose=args.verbose,
                        **_recipes(args))
    with _weights_hint():
        result = clf.lr_find([str(p) for p in paths], labels, start_lr=args.start_lr,
                             end_lr=args.end_lr, num_steps=args.steps)
    diverged = (f"; the loss diverged at {result.diverged_at:.2g}" if result.diverged_at
                else "; the loss did not diverge (try a larger --end-lr)")
    if result.suggestion is None:  # the sweep showed no LR better than its smallest
        args.emit(f"no suggestion: {result.reason} ({len(result.lrs)} steps of the {result.phase} "
                  f"phase, lr {result.lrs[0]:.2g} to {result.lrs[-1]:.2g}{diverged}); keep the "
                  "default lr, or sweep more steps (--steps, more images)")
    else:
        args.emit(f"suggested lr {result.suggestion:.2g} (steepest descent of the {result.phase} "
                  f"phase's loss; lowest loss at {result.min_loss_lr:.2g}{diverged}); "
                  f"use: easytl fit {args.data_dir} --lr {result.suggestion:.2g}")
    if args.plot:
        from ..plots import plot_lr_find
        plot_lr_find(result, path=args.plot)
        args.emit(f"curve written to {args.plot}")
    return 0
