"""Labels from a table: a CSV file or a pandas DataFrame with a column of image paths.

``fit("labels.csv", root="images/")`` or ``fit(df, y="label", root="images/")``
(fastai's ``from_csv`` / ``from_df``). Paths are relative to ``root`` (default:
the CSV file's folder, or the working directory for a DataFrame) and must stay
inside it; a label cell holding several labels is split on ``label_delim``.
pandas is optional: a CSV path is read with the csv module.
"""

from __future__ import annotations

import csv
import os
import warnings
from pathlib import Path

import numpy as np

from .images import IMAGE_EXTENSIONS

PATH_COLUMNS = ("path", "file", "filename", "file_name", "image", "image_path", "fname", "name")
LABEL_COLUMNS = ("label", "labels", "class", "category", "tags", "target", "y")
TABLE_SUFFIXES = (".csv", ".tsv")


def is_table(X) -> bool:
    """A CSV/TSV path, or a DataFrame (duck-typed: pandas stays optional)."""
    if isinstance(X, (str, os.PathLike)):
        return Path(X).suffix.lower() in TABLE_SUFFIXES
    return hasattr(X, "columns") and hasattr(X, "to_dict")


def _rows(table) -> tuple[list[str], list[dict]]:
    if isinstance(table, (str, os.PathLike)):
        path = Path(table)
        if not path.is_file():
            raise FileNotFoundError(f"label table not found: {path}")
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f, delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
            rows = list(reader)
            return list(reader.fieldnames or []), rows
    return [str(c) for c in table.columns], [{str(k): v for k, v in row.items()}
                                             for row in table.to_dict("records")]


def _column(columns: list[str], given, candidates, fallback: int | None, what: str):
    if given is not None:
        if given not in columns:
            raise ValueError(f"the table has no {what} column {given!r}; its columns: {columns}.")
        return given
    lowered = {c.lower().strip(): c for c in columns}
    for name in candidates:
        if name in lowered:
            return lowered[name]
    if fallback is not None and len(columns) > fallback:
        return columns[fallback]
    return None


def read_table(table, y=None, root=None, path_column=None, label_delim=None,
               on_bad_image: str = "error", with_rows: bool = False):
    """Image paths and labels from a table.

    Parameters
    ----------
    table : CSV/TSV path or DataFrame
    y : str or labels, optional
        The label column (default: "label", "labels", "class", ... or the second column),
        or the labels themselves: one per row of the table (an array, an indicator
        matrix or a list of label collections), then the table's label column is not
        read; a count other than the table's rows is an error.
    root : path, optional
        Folder the paths are relative to (default: the CSV's folder; the working
        directory for a DataFrame).
    path_column : str, optional
        Default: "path", "file", "filename", "image", ... or the first column.
    label_delim : str, optional
        Split label cells on it: each image then has a set of labels (multi-label).
    on_bad_image : "error" or "skip"
        A row with a missing file, an empty label or a path outside ``root``
        raises a ValueError naming the row, or is left out with a warning.

    Returns
    -------
    paths (list of Path), labels (array, list of tuples with ``label_delim``, or
    None without a label column), and the rows left out as (row, path, reason);
    with ``with_rows``, also the position of each path's row among the table's rows.
    """
    columns, rows = _rows(table)
    if not rows:
        raise ValueError("the label table has no rows.")
    given = None if y is None or isinstance(y, str) else _given_labels(y, len(rows))
    path_col = _column(columns, path_column, PATH_COLUMNS, 0, "path")
    label_col = None if given is not None else _column(
        columns, y, LABEL_COLUMNS, 1 if len(columns) > 1 else None, "label")
    if label_col == path_col:
        label_col = None
    root_given = root is not None
    if root is None:
        root = Path(table).parent if isinstance(table, (str, os.PathLike)) else Path.cwd()
    root = Path(root).resolve()
    paths, labels, bad, kept = [], [], [], []
    first_line = 2 if isinstance(table, (str, os.PathLike)) else 0  # after the CSV header
    for number, row in enumerate(rows, start=first_line):
        cell = "" if row.get(path_col) is None else str(row[path_col]).strip()
        path = (root / cell).resolve()
        reason = None
        if not cell:
            reason = "empty path"
        elif root not in path.parents:
            reason = f"path outside root {root}"
        elif not path.is_file():
            reason = "file not found"
        elif path.suffix.lower() not in IMAGE_EXTENSIONS:
            reason = "not an image file (extension)"
        label = None
        if label_col is not None:
            raw = row.get(label_col)
            text = "" if raw is None or (isinstance(raw, float) and np.isnan(raw)) else str(raw).strip()
            if label_delim is not None:
                label = tuple(part.strip() for part in text.split(label_delim) if part.strip())
            else:
                label = raw if not isinstance(raw, str) else raw.strip()
            if not text and reason is None and label_delim is None:
                reason = "empty label"  # with a delimiter, an empty cell is an image of no class
        if reason is not None:
            bad.append((number, cell, reason))
            continue
        paths.append(path)
        labels.append(label)
        kept.append(number - first_line)
    if bad and (on_bad_image == "error" or len(bad) == len(rows)):
        lines = "\n".join(f"  row {n} ({p}): {r}" for n, p, r in bad[:10])
        more = f"\n  ... and {len(bad) - 10} more" if len(bad) > 10 else ""
        where = (f"\nPaths were looked for under {root}, {_root_words(table, root_given)}."
                 if any(r == "file not found" for _, _, r in bad) else "")
        raise ValueError(f"{len(bad)} of {len(rows)} rows of the label table cannot be used:\n"
                         f"{lines}{more}{where}\nFix them, or pass on_bad_image='skip' to leave them out.")
    if bad:
        warnings.warn(f"left out {len(bad)} rows of the label table: "
                      + "; ".join(f"row {n}: {r}" for n, _, r in bad[:5]), stacklevel=3)
    if given is not None:  # the rows left out leave their labels out too
        labels = _take(given, kept)
    elif label_col is None:
        labels = None
    elif label_delim is None:
        labels = np.asarray(labels)
    return (paths, labels, bad, kept) if with_rows else (paths, labels, bad)


def _root_words(table, given: bool) -> str:
    """Which folder the table's paths were read relative to, and how to name another."""
    if given:
        return "the folder given for the table's paths"
    default = "the table's folder" if isinstance(table, (str, os.PathLike)) else \
        "the working directory (a DataFrame has no folder)"
    return f"{default}: pass root=FOLDER if its paths are relative to another folder"


def _given_labels(y, n_rows: int):
    """Labels given beside a table: one per row, else a ValueError naming both counts."""
    from .labels import as_label_array
    labels = as_label_array(y)
    if labels.ndim == 0 or len(labels) != n_rows:
        count = 1 if labels.ndim == 0 else len(labels)
        raise ValueError(f"the label table has {n_rows} rows but y has {count} labels: pass one "
                         "label per row of the table, or the name of its label column as y.")
    return labels


def _take(labels: np.ndarray, kept: list[int]):
    """The labels of the rows kept, in the form they were given (label sets stay a list)."""
    taken = labels[np.asarray(kept, dtype=np.int64)]
    if taken.dtype == object and len(taken) and all(isinstance(v, tuple) for v in taken):
        return list(taken)
    return taken
