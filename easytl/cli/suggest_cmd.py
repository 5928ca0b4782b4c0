"""``easytl suggest MODEL POOL_DIR --n 50 --out to_label.csv [--html to_label.html]``.

Writes the images worth labelling next as a CSV that ``easytl fit POOL_DIR
--labels to_label.csv`` reads once its ``label`` column is filled in: columns
``path`` (relative to POOL_DIR), ``label`` (empty), ``guess`` (the model's
prediction; deliberately not a name fit takes for a label column),
``probability``, ``score`` (uncertainty in [0, 1]), ``unknown`` ("yes" for images
the novelty score calls unknown, listed after the suggestions, at most ``--n``
of them), ``novelty`` (their score), ``pick`` and ``uncertainty_rank``.

The suggestions come in the order the diversity step picked them (``pick`` 1, 2,
...): the most uncertain image first, then each the uncertain image farthest from
those before it, so the first k rows are a spread-out batch of k. They are not
sorted by uncertainty, since the k most uncertain are often near-copies of each
other; ``uncertainty_rank`` (1: the most uncertain image of the pool) says where
each stands by uncertainty alone, for whoever wants that order instead.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from .commands import CommandError, _announce, _collect_images, _count, _load, _report_bad, _say

# pick and uncertainty_rank last: the columns before them keep the places v0.3 gave them
COLUMNS = ["path", "label", "guess", "probability", "score", "unknown", "novelty", "pick",
           "uncertainty_rank"]


def add_parser(command, positive_int) -> None:
    """The ``suggest`` sub-command (``command`` is build_parser's sub-command factory)."""
    sub = command("suggest", suggest, "which unlabelled images to label next (active learning)",
                  "Score every image under POOL_DIR (searched recursively) with the model and "
                  "write N worth labelling next (uncertain, and unlike each other) to a CSV with "
                  "an empty label column, in the order they were picked (the first k rows are a "
                  "spread-out batch of k; uncertainty_rank gives each one's rank by uncertainty "
                  "alone); images unlike the training images are listed "
                  "after them with unknown=yes. Fill the label column in (delete the rows you "
                  "do not label) and fit on it: easytl fit POOL_DIR --labels CSV.",
                  ["easytl suggest model.easytl pool/ --n 50 --out to_label.csv --html to_label.html",
                   "easytl fit pool/ --labels to_label.csv --out model2.easytl"])
    sub.add_argument("model", metavar="MODEL")
    sub.add_argument("pool_dir", metavar="POOL_DIR")
    sub.add_argument("--n", type=positive_int, default=50, help="how many images to suggest")
    sub.add_argument("--out", required=True, help="the CSV to write (e.g. to_label.csv)")
    sub.add_argument("--html", help="also write a page to label from (thumbnails, the model's guess)")
    sub.add_argument("--uncertainty", default="margin", choices=["margin", "entropy"])


def suggest(args) -> int:
    _announce(args, f"loading {args.model}")
    from ..io import atomic_file, check_writable
    from ..trust.suggestions import _label_text, write_html

    pool = Path(args.pool_dir)
    if not pool.is_dir():
        raise CommandError(f"POOL_DIR is not a folder: {pool}")
    check_writable(args.out)
    if args.html:
        check_writable(args.html)
    clf = _load(args.model)
    # decoded once, at the model's input size: the readability check and the pool pass share it
    files, bad, images = _collect_images([pool], size=clf.image_size_)
    _report_bad(bad)
    if not files:
        raise CommandError(f"no readable images in {pool}.")
    if args.n > len(files):
        raise CommandError(f"--n {args.n} but {pool} holds {_count(len(files), 'readable image')}: "
                           f"ask for at most {len(files)}.")
    found = clf.suggest_labels(images, n=args.n, uncertainty=args.uncertainty)
    unknown = found.unknown[:args.n]

    def relative(index) -> str:
        return Path(os.path.relpath(files[index], pool)).as_posix()
    rows = [[relative(i), "", _label_text(g), f"{p:.4f}", f"{s:.4f}", "no", "", str(pick), str(rank)]
            for pick, (i, g, p, s, rank) in enumerate(zip(
                found.indices, found.guesses, found.probabilities, found.scores,
                found.uncertainty_ranks), start=1)]
    rows += [[relative(i), "", _label_text(g), f"{p:.4f}", "", "yes", f"{v:.3f}", "", ""]
             for i, g, p, v in zip(unknown, found.unknown_guesses, found.unknown_probabilities,
                                   found.unknown_scores)]
    with atomic_file(args.out) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(COLUMNS)
            writer.writerows(rows)
    more = len(found.unknown) - len(unknown)
    args.emit(f"{_count(len(found), 'image')} to label (of {len(files)} in {pool}) and "
              f"{_count(len(unknown), 'unknown image')}"
              + (f" (and {more} more unknown, not listed)" if more else "")
              + f" written to {args.out} (in pick order: the first k rows are a spread-out "
              f"batch of k); fill in its label column, then: easytl fit {pool} "
              f"--labels {args.out} --out MODEL")
    if args.html:
        write_html(found, [str(f) for f in files], args.html)
        args.emit(f"page to label from written to {args.html}")
    if bad:
        _say(f"easytl: {_count(len(bad), 'file')} in {pool} could not be read (listed above) and "
             "were left out.")
        return 1
    return 0
